//! Proof of which execution provider ran: ONNX Runtime's profile names the provider of every node
//! it executed. Sessions profile their first run only, then stop profiling.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::error::{io_err, Result, RuntimeError};

/// Distinct nodes executed per execution provider, from an ONNX Runtime profile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProviderReport {
    pub nodes: BTreeMap<String, usize>,
}

impl ProviderReport {
    /// Parses ONNX Runtime's profiling JSON (an array of trace events whose `Node` events carry
    /// `args.provider`).
    pub fn from_profile_json(text: &str) -> std::result::Result<ProviderReport, String> {
        let events: Vec<serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("profile is not JSON: {e}"))?;
        let mut seen: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for event in &events {
            if event.get("cat").and_then(|c| c.as_str()) != Some("Node") {
                continue;
            }
            let (Some(name), Some(provider)) = (
                event.get("name").and_then(|n| n.as_str()),
                event
                    .get("args")
                    .and_then(|a| a.get("provider"))
                    .and_then(|p| p.as_str()),
            ) else {
                continue;
            };
            let node = name.strip_suffix("_kernel_time").unwrap_or(name);
            seen.entry(provider.to_string())
                .or_default()
                .insert(node.to_string());
        }
        Ok(ProviderReport {
            nodes: seen.into_iter().map(|(p, n)| (p, n.len())).collect(),
        })
    }

    /// Providers that ran at least one node, most nodes first.
    pub fn providers(&self) -> Vec<&str> {
        let mut v: Vec<(&str, usize)> = self.nodes.iter().map(|(p, n)| (p.as_str(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.into_iter().map(|(p, _)| p).collect()
    }

    /// Nodes run by `provider`.
    pub fn nodes_on(&self, provider: &str) -> usize {
        self.nodes.get(provider).copied().unwrap_or(0)
    }
}

impl fmt::Display for ProviderReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes.is_empty() {
            return f.write_str("no nodes executed");
        }
        let parts: Vec<String> = self
            .providers()
            .into_iter()
            .map(|p| format!("{p} ({} nodes)", self.nodes_on(p)))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// A fresh profile file prefix in the temp folder (ONNX Runtime appends a timestamp and `.json`).
pub(crate) fn profile_prefix() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "gen-runtime-profile-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Reads, parses and deletes a finished profile.
pub(crate) fn read_profile(path: &Path) -> Result<ProviderReport> {
    let text = std::fs::read_to_string(path).map_err(io_err(path));
    let _ = std::fs::remove_file(path);
    ProviderReport::from_profile_json(&text?).map_err(|message| RuntimeError::Ort {
        context: format!("reading the profile {}", path.display()),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_nodes_per_provider() {
        let json = r#"[
          {"cat":"Session","name":"model_run","args":{}},
          {"cat":"Node","name":"mm_fence_before","args":{"op_name":"MatMul"}},
          {"cat":"Node","name":"mm_kernel_time","args":{"op_name":"MatMul","provider":"CUDAExecutionProvider"}},
          {"cat":"Node","name":"add_kernel_time","args":{"op_name":"Add","provider":"CUDAExecutionProvider"}},
          {"cat":"Node","name":"add_kernel_time","args":{"op_name":"Add","provider":"CUDAExecutionProvider"}},
          {"cat":"Node","name":"shape_kernel_time","args":{"op_name":"Shape","provider":"CPUExecutionProvider"}}
        ]"#;
        let r = ProviderReport::from_profile_json(json).unwrap();
        assert_eq!(r.nodes_on("CUDAExecutionProvider"), 2);
        assert_eq!(r.nodes_on("CPUExecutionProvider"), 1);
        assert_eq!(
            r.to_string(),
            "CUDAExecutionProvider (2 nodes), CPUExecutionProvider (1 nodes)"
        );
        assert!(ProviderReport::from_profile_json("nope").is_err());
    }
}
