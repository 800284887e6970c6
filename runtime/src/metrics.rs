//! Per-step metrics in the run directory: `metrics.jsonl` (one JSON object per step) and
//! `metrics.csv` (the same columns), flushed every step, plus the loss / lr / accuracy plots.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_err, Result, RuntimeError};
use crate::fsutil::write_atomic;
use crate::plot::{line_chart, Series};

/// One training step's metrics. `step` counts steps done (1 for the first step), `epoch` is the
/// 1-based epoch of the step's training batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsRecord {
    pub step: u64,
    pub epoch: u64,
    /// NaN when the loss diverged (written as null in JSON).
    #[serde(deserialize_with = "null_as_nan")]
    pub loss: f64,
    pub lr: Option<f64>,
    pub gen_applied: Option<bool>,
    /// L(w − Δ) on GeN steps.
    pub probe_loss_minus: Option<f64>,
    /// L(w + Δ) on GeN steps.
    pub probe_loss_plus: Option<f64>,
    /// L(w) on GeN steps.
    pub probe_loss_zero: Option<f64>,
    pub train_accuracy: Option<f64>,
    pub eval_loss: Option<f64>,
    pub eval_accuracy: Option<f64>,
    /// Average training speed of this invocation so far.
    #[serde(deserialize_with = "null_as_nan")]
    pub steps_per_sec: f64,
}

/// serde_json writes non-finite floats as null; read them back as NaN.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The CSV header, in field order.
pub const CSV_COLUMNS: [&str; 12] = [
    "step",
    "epoch",
    "loss",
    "lr",
    "gen_applied",
    "probe_loss_minus",
    "probe_loss_plus",
    "probe_loss_zero",
    "train_accuracy",
    "eval_loss",
    "eval_accuracy",
    "steps_per_sec",
];

impl MetricsRecord {
    fn csv_row(&self) -> String {
        let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        [
            self.step.to_string(),
            self.epoch.to_string(),
            self.loss.to_string(),
            num(self.lr),
            self.gen_applied
                .map(|b| u8::from(b).to_string())
                .unwrap_or_default(),
            num(self.probe_loss_minus),
            num(self.probe_loss_plus),
            num(self.probe_loss_zero),
            num(self.train_accuracy),
            num(self.eval_loss),
            num(self.eval_accuracy),
            format!("{:.3}", self.steps_per_sec),
        ]
        .join(",")
    }
}

/// The metrics files of a run directory, open for appending.
pub struct MetricsLog {
    jsonl_path: PathBuf,
    csv_path: PathBuf,
    jsonl: File,
    csv: File,
    records: Vec<MetricsRecord>,
}

impl MetricsLog {
    /// Opens the metrics of `dir`, keeping the records of steps ≤ `keep_through` (the checkpoint a
    /// resumed run continues from; 0 for a new run) and rewriting both files to exactly those.
    pub fn open(dir: &Path, keep_through: u64) -> Result<MetricsLog> {
        let jsonl_path = dir.join("metrics.jsonl");
        let csv_path = dir.join("metrics.csv");
        let records = if keep_through > 0 {
            read_records(&jsonl_path)?
                .into_iter()
                .filter(|r| r.step <= keep_through)
                .collect()
        } else {
            Vec::new()
        };
        let mut jsonl_text = String::new();
        for r in &records {
            jsonl_text.push_str(&to_json(r));
            jsonl_text.push('\n');
        }
        let mut csv_text = CSV_COLUMNS.join(",");
        csv_text.push('\n');
        for r in &records {
            csv_text.push_str(&r.csv_row());
            csv_text.push('\n');
        }
        write_atomic(&jsonl_path, jsonl_text.as_bytes())?;
        write_atomic(&csv_path, csv_text.as_bytes())?;
        let append = |p: &Path| OpenOptions::new().append(true).open(p).map_err(io_err(p));
        Ok(MetricsLog {
            jsonl: append(&jsonl_path)?,
            csv: append(&csv_path)?,
            jsonl_path,
            csv_path,
            records,
        })
    }

    /// Appends one step to both files and flushes them.
    pub fn append(&mut self, record: MetricsRecord) -> Result<()> {
        writeln!(self.jsonl, "{}", to_json(&record)).map_err(io_err(&self.jsonl_path))?;
        writeln!(self.csv, "{}", record.csv_row()).map_err(io_err(&self.csv_path))?;
        self.records.push(record);
        Ok(())
    }

    pub fn records(&self) -> &[MetricsRecord] {
        &self.records
    }

    /// Writes loss.png, lr.png and (when any accuracy was logged) accuracy.png into `dir`.
    pub fn plot(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let rs = &self.records;
        let x = |r: &MetricsRecord| r.step as f64;
        let pick = |f: fn(&MetricsRecord) -> Option<f64>| -> Vec<(f64, f64)> {
            rs.iter().filter_map(|r| f(r).map(|v| (x(r), v))).collect()
        };
        let mut written = Vec::new();
        let mut chart = |file: &str, title: &str, series: Vec<Series<'_>>| -> Result<()> {
            let series: Vec<Series<'_>> = series
                .into_iter()
                .filter(|s| !s.points.is_empty())
                .collect();
            if series.is_empty() {
                return Ok(());
            }
            let path = dir.join(file);
            line_chart(&path, title, "step", &series)?;
            written.push(path);
            Ok(())
        };
        chart(
            "loss.png",
            "Loss",
            vec![
                Series {
                    label: "train loss",
                    points: pick(|r| Some(r.loss)),
                    markers: false,
                },
                Series {
                    label: "eval loss",
                    points: pick(|r| r.eval_loss),
                    markers: true,
                },
            ],
        )?;
        chart(
            "lr.png",
            "Learning rate",
            vec![Series {
                label: "lr",
                points: pick(|r| r.lr),
                markers: false,
            }],
        )?;
        chart(
            "accuracy.png",
            "Accuracy",
            vec![
                Series {
                    label: "train batch accuracy",
                    points: pick(|r| r.train_accuracy),
                    markers: false,
                },
                Series {
                    label: "eval accuracy",
                    points: pick(|r| r.eval_accuracy),
                    markers: true,
                },
            ],
        )?;
        Ok(written)
    }
}

/// JSON with non-finite numbers as null (JSON has no NaN).
fn to_json(r: &MetricsRecord) -> String {
    serde_json::to_string(r).expect("a struct of numbers and options always serialises")
}

/// Reads a metrics.jsonl file (an absent file holds no records).
pub fn read_records(path: &Path) -> Result<Vec<MetricsRecord>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    BufReader::new(file)
        .lines()
        .enumerate()
        .filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(|(i, line)| {
            let line = line.map_err(io_err(path))?;
            serde_json::from_str(&line).map_err(|e| RuntimeError::RunDir {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}
