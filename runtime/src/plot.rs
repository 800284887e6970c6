//! Minimal line charts as PNG: axes, grid, tick labels, title and legend, drawn into an RGB buffer
//! with the public-domain 8×8 bitmap font of `font8x8`. No system fonts or image libraries needed.

use std::path::Path;

use crate::error::Result;
use crate::fsutil::write_atomic_with;

const WIDTH: usize = 900;
const HEIGHT: usize = 520;
const LEFT: usize = 96;
const RIGHT: usize = 24;
const TOP: usize = 48;
const BOTTOM: usize = 56;

type Rgb = [u8; 3];
const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];
const GRID: Rgb = [225, 225, 225];
/// Series colours, in order.
pub(crate) const PALETTE: [Rgb; 4] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [148, 103, 189],
];

/// One named series of (x, y) points; non-finite points break the line.
pub(crate) struct Series<'a> {
    pub label: &'a str,
    pub points: Vec<(f64, f64)>,
    /// Draw a marker on each point (sparse series such as evaluations).
    pub markers: bool,
}

struct Canvas {
    pixels: Vec<u8>,
}

impl Canvas {
    fn new() -> Canvas {
        Canvas {
            pixels: vec![255; WIDTH * HEIGHT * 3],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if (0..WIDTH as i64).contains(&x) && (0..HEIGHT as i64).contains(&y) {
            let i = (y as usize * WIDTH + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x, y, c);
            }
        }
    }

    /// A line `width` pixels thick (Bresenham with a square pen).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), width: i64, c: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        let half = width / 2;
        loop {
            self.rect(
                x - half,
                y - half,
                x - half + width - 1,
                y - half + width - 1,
                c,
            );
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text at (x, y) top-left, each font pixel drawn as `scale`×`scale`.
    fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Rgb) {
        for (i, ch) in s.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY
                .get(ch as usize)
                .copied()
                .unwrap_or(font8x8::legacy::BASIC_LEGACY[b'?' as usize]);
            let gx = x + i as i64 * 8 * scale;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        let (px, py) = (gx + col * scale, y + row as i64 * scale);
                        self.rect(px, py, px + scale - 1, py + scale - 1, c);
                    }
                }
            }
        }
    }

    fn text_width(s: &str, scale: i64) -> i64 {
        s.chars().count() as i64 * 8 * scale
    }
}

/// "Nice" tick positions covering [lo, hi] (1, 2, 5 × 10^k steps).
fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let span = (hi - lo).abs().max(f64::MIN_POSITIVE);
    let raw = span / target as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= target as f64)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

fn label(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Draws `series` against a shared x axis and writes the PNG atomically to `path`.
pub(crate) fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[Series<'_>],
) -> Result<()> {
    let finite = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let (mut x0, mut x1, mut y0, mut y1) = finite().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
    );
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 * y0.abs().max(1e-12) {
        let pad = y0.abs().max(1.0) * 0.05;
        y0 -= pad;
        y1 += pad;
    }
    let pad = (y1 - y0) * 0.05;
    let (y0, y1) = (y0 - pad, y1 + pad);

    let (pl, pr, pt, pb) = (
        LEFT as i64,
        (WIDTH - RIGHT) as i64,
        TOP as i64,
        (HEIGHT - BOTTOM) as i64,
    );
    let to_px = |x: f64, y: f64| -> (i64, i64) {
        let px = pl as f64 + (x - x0) / (x1 - x0) * (pr - pl) as f64;
        let py = pb as f64 - (y - y0) / (y1 - y0) * (pb - pt) as f64;
        (px.round() as i64, py.round() as i64)
    };

    let mut c = Canvas::new();
    for t in ticks(y0, y1, 6) {
        let (_, py) = to_px(x0, t);
        c.line((pl, py), (pr, py), 1, GRID);
        let s = label(t);
        c.text(pl - 8 - Canvas::text_width(&s, 1), py - 4, &s, 1, BLACK);
    }
    for t in ticks(x0, x1, 8) {
        let (px, _) = to_px(t, y0);
        c.line((px, pt), (px, pb), 1, GRID);
        let s = label(t);
        c.text(px - Canvas::text_width(&s, 1) / 2, pb + 8, &s, 1, BLACK);
    }
    c.line((pl, pt), (pl, pb), 1, BLACK);
    c.line((pl, pb), (pr, pb), 1, BLACK);
    c.line((pr, pt), (pr, pb), 1, BLACK);
    c.line((pl, pt), (pr, pt), 1, BLACK);
    c.text(
        (WIDTH as i64 - Canvas::text_width(title, 2)) / 2,
        14,
        title,
        2,
        BLACK,
    );
    c.text(
        (pl + pr - Canvas::text_width(x_label, 1)) / 2,
        pb + 30,
        x_label,
        1,
        BLACK,
    );

    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut prev: Option<(i64, i64)> = None;
        for &(x, y) in &s.points {
            if !(x.is_finite() && y.is_finite()) {
                prev = None;
                continue;
            }
            let p = to_px(x, y);
            if let Some(q) = prev {
                c.line(q, p, 2, color);
            }
            if s.markers || s.points.len() == 1 {
                c.rect(p.0 - 3, p.1 - 3, p.0 + 3, p.1 + 3, color);
            }
            prev = Some(p);
        }
        let ly = pt + 10 + i as i64 * 14;
        let lx = pr - 10 - Canvas::text_width(s.label, 1) - 22;
        c.rect(lx - 4, ly - 3, pr - 6, ly + 10, WHITE);
        c.rect(lx, ly + 2, lx + 14, ly + 5, color);
        c.text(lx + 20, ly, s.label, 1, BLACK);
    }

    write_atomic_with(path, |w| {
        let mut encoder = png::Encoder::new(w, WIDTH as u32, HEIGHT as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(&c.pixels)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(label(0.25), "0.25");
        assert_eq!(label(123456.0), "1.2e5");
    }

    #[test]
    fn writes_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        let series = [Series {
            label: "loss",
            points: vec![(1.0, 0.5), (2.0, f64::NAN), (3.0, 0.2)],
            markers: false,
        }];
        line_chart(&path, "Loss", "step", &series).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
