//! Per-step metrics in the run directory: `metrics.jsonl` (one JSON object per step) and
//! `metrics.csv` (the same columns), flushed every step, plus the loss / lr / accuracy plots.
//!
//! Each row goes to its file in one write of a whole line; a write that fails part-way (a full
//! disk) is cut back off, and a last line without its newline (a crash mid-write) is not a record:
//! reading skips it and reopening drops it.

use std::fs::{File, OpenOptions};
use std::io::Write;
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
    jsonl: LineFile,
    csv: LineFile,
    records: Vec<MetricsRecord>,
}

/// A text file open for appending whole lines.
struct LineFile {
    path: PathBuf,
    file: File,
    /// Bytes of complete lines written.
    len: u64,
}

impl LineFile {
    /// Replaces `path` (atomically) with `text` and opens it for appending.
    fn create(path: PathBuf, text: &str) -> Result<LineFile> {
        write_atomic(&path, text.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(LineFile {
            path,
            file,
            len: text.len() as u64,
        })
    }

    /// Appends `line` and a newline in one write; on failure the file is cut back to its last
    /// complete line.
    fn append(&mut self, mut line: String) -> Result<()> {
        line.push('\n');
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            // Best effort: the write error is what gets reported.
            let _ = self.file.set_len(self.len);
            return Err(io_err(&self.path)(e));
        }
        self.len += line.len() as u64;
        Ok(())
    }
}

impl MetricsLog {
    /// Opens the metrics of `dir`, keeping the records of steps ≤ `keep_through` (the checkpoint a
    /// resumed run continues from; 0 for a new run) and rewriting both files to exactly those.
    pub fn open(dir: &Path, keep_through: u64) -> Result<MetricsLog> {
        let jsonl_path = dir.join("metrics.jsonl");
        let records: Vec<MetricsRecord> = if keep_through > 0 {
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
        Ok(MetricsLog {
            jsonl: LineFile::create(jsonl_path, &jsonl_text)?,
            csv: LineFile::create(dir.join("metrics.csv"), &csv_text)?,
            records,
        })
    }

    /// Appends one step to both files (one whole line each, unbuffered).
    pub fn append(&mut self, record: MetricsRecord) -> Result<()> {
        self.jsonl.append(to_json(&record))?;
        self.csv.append(record.csv_row())?;
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

/// Reads a metrics.jsonl file (an absent file holds no records). A last line without its newline
/// was cut short by a crash and is not read.
pub fn read_records(path: &Path) -> Result<Vec<MetricsRecord>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    bytes
        .split_inclusive(|&b| b == b'\n')
        .enumerate()
        .filter_map(|(i, line)| Some((i, line.strip_suffix(b"\n")?)))
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(i, line)| {
            serde_json::from_slice(line).map_err(|e| RuntimeError::RunDir {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64) -> MetricsRecord {
        MetricsRecord {
            step,
            epoch: 1,
            loss: 0.5,
            lr: Some(0.1),
            gen_applied: None,
            probe_loss_minus: None,
            probe_loss_plus: None,
            probe_loss_zero: None,
            train_accuracy: None,
            eval_loss: None,
            eval_accuracy: None,
            steps_per_sec: f64::NAN,
        }
    }

    #[test]
    fn a_torn_last_line_is_dropped_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), 0).unwrap();
        for step in 1..=3 {
            log.append(record(step)).unwrap();
        }
        drop(log);
        let path = dir.path().join("metrics.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"step\":4,\"epo");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_records(&path).unwrap().len(), 3);

        let mut log = MetricsLog::open(dir.path(), 3).unwrap();
        log.append(record(4)).unwrap();
        let steps: Vec<u64> = read_records(&path)
            .unwrap()
            .iter()
            .map(|r| r.step)
            .collect();
        assert_eq!(steps, [1, 2, 3, 4]);
        let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
        assert_eq!(csv.lines().count(), 5);

        // A damaged complete line is still an error naming it.
        std::fs::write(&path, "{\"step\":1}\n").unwrap();
        let err = read_records(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
