//! The tensor codec on hostile and ordinary files: sizes checked before allocating, external
//! data confined to the model's folder (symlinks resolved), and the opt-out.

use gen_format::tensor::{decode, encode, ExternalPolicy, ExternalWriter, TensorData, TensorError};
use gen_format::DType;
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{StringStringEntryProto, TensorProto};
use std::path::Path;

/// An f32 tensor `name` of `dims` whose data is external, with these `external_data` entries.
fn external(name: &str, dims: &[i64], entries: &[(&str, &str)]) -> TensorProto {
    let mut tp = TensorProto::new();
    tp.name = name.into();
    tp.data_type = DType::F32.onnx();
    tp.dims = dims.to_vec();
    tp.data_location = DataLocation::EXTERNAL.into();
    tp.external_data = entries
        .iter()
        .map(|&(k, v)| {
            let mut e = StringStringEntryProto::new();
            e.key = k.into();
            e.value = v.into();
            e
        })
        .collect();
    tp
}

fn in_dir(dir: &Path) -> ExternalPolicy<'_> {
    ExternalPolicy::within(Some(dir))
}

fn floats(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn external_data_round_trips_through_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ExternalWriter::new("m.onnx.data");
    let mut a = encode(
        "a",
        DType::F32,
        vec![2],
        TensorData::Raw(floats(&[1.0, 2.0])),
    );
    let mut b = encode("b", DType::F32, vec![1], TensorData::Raw(floats(&[3.0])));
    w.externalize(&mut a);
    w.externalize(&mut b);
    std::fs::write(dir.path().join("m.onnx.data"), &w.bytes).unwrap();
    let got = decode(&b, &in_dir(dir.path())).unwrap();
    assert_eq!(got.data, TensorData::Raw(floats(&[3.0])));
    assert_eq!(got.dims, vec![1]);
    // 4 KiB alignment: b starts at 4096
    assert_eq!(w.bytes.len(), 4096 + 4);
    let got = decode(&a, &in_dir(dir.path())).unwrap();
    assert_eq!(got.data, TensorData::Raw(floats(&[1.0, 2.0])));
}

#[test]
fn huge_declared_length_in_a_tiny_file_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.bin"), [0u8; 16]).unwrap();
    // 2.5e11 floats = 1e12 bytes, as dims and as the declared length
    let tp = external(
        "big",
        &[250_000_000_000],
        &[("location", "w.bin"), ("length", "1000000000000")],
    );
    let err = decode(&tp, &in_dir(dir.path())).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TensorError::External { .. }), "{msg}");
    assert!(
        msg.contains("tensor 'big'") && msg.contains("w.bin"),
        "{msg}"
    );
    assert!(msg.contains("past the end of the file (16 bytes)"), "{msg}");
    // a length that disagrees with the shape is refused before the file is opened
    let tp = external(
        "w",
        &[2],
        &[("location", "w.bin"), ("length", "1000000000000")],
    );
    let msg = decode(&tp, &in_dir(dir.path())).unwrap_err().to_string();
    assert!(
        msg.contains("declares 1000000000000 bytes but f32[2] needs 8"),
        "{msg}"
    );
}

#[test]
fn offset_past_the_end_and_overflow_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.bin"), floats(&[1.0, 2.0, 3.0])).unwrap();
    let ok = external("w", &[2], &[("location", "w.bin"), ("offset", "4")]);
    let got = decode(&ok, &in_dir(dir.path())).unwrap();
    assert_eq!(got.data, TensorData::Raw(floats(&[2.0, 3.0])));
    let past = external("w", &[2], &[("location", "w.bin"), ("offset", "8")]);
    let msg = decode(&past, &in_dir(dir.path())).unwrap_err().to_string();
    assert!(
        msg.contains("bytes 8..16 are past the end of the file (12 bytes)"),
        "{msg}"
    );
    let max = u64::MAX.to_string();
    let wrap = external("w", &[2], &[("location", "w.bin"), ("offset", &max)]);
    let msg = decode(&wrap, &in_dir(dir.path())).unwrap_err().to_string();
    assert!(msg.contains("overflows"), "{msg}");
    let negative = external("w", &[2], &[("location", "w.bin"), ("offset", "-1")]);
    let msg = decode(&negative, &in_dir(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("'offset' is not a number"), "{msg}");
}

#[test]
fn raw_and_typed_counts_are_checked_against_the_shape() {
    let mut tp = encode("r", DType::F32, vec![3], TensorData::Raw(floats(&[1.0])));
    let none = ExternalPolicy::default();
    let msg = decode(&tp, &none).unwrap_err().to_string();
    assert!(
        msg.contains("tensor 'r': holds 4 bytes but f32[3] needs 12"),
        "{msg}"
    );
    // dimensions whose product overflows
    tp.dims = vec![i64::MAX, i64::MAX];
    let msg = decode(&tp, &none).unwrap_err().to_string();
    assert!(msg.contains("too large"), "{msg}");
    tp.dims = vec![2, -1];
    let msg = decode(&tp, &none).unwrap_err().to_string();
    assert!(msg.contains("negative dimension"), "{msg}");
    // typed field: 2 complex64 elements need 4 floats; bools are normalised to 0/1
    let mut c = TensorProto::new();
    c.name = "c".into();
    c.data_type = DType::C64.onnx();
    c.dims = vec![2];
    c.float_data = vec![1.0, 2.0, 3.0];
    let msg = decode(&c, &none).unwrap_err().to_string();
    assert!(msg.contains("3 values for 2 elements of c64"), "{msg}");
    c.data_type = DType::Bool.onnx();
    c.float_data.clear();
    c.int32_data = vec![0, 7];
    let got = decode(&c, &none).unwrap();
    assert_eq!(got.data, TensorData::Raw(vec![0, 1]));
}

#[test]
fn locations_must_be_relative_and_need_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    for loc in ["../w.bin", "/etc/passwd", "a/../../w.bin"] {
        let tp = external("w", &[1], &[("location", loc)]);
        let msg = decode(&tp, &in_dir(dir.path())).unwrap_err().to_string();
        assert!(
            msg.contains("must be relative to the model's folder"),
            "{loc}: {msg}"
        );
    }
    let tp = external("w", &[1], &[("location", "w.bin")]);
    let msg = decode(&tp, &ExternalPolicy::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not loaded from a file"), "{msg}");
    let mut s = external("s", &[1], &[("location", "w.bin")]);
    s.data_type = DType::String.onnx();
    let msg = decode(&s, &in_dir(dir.path())).unwrap_err().to_string();
    assert!(
        msg.contains("external string data is not supported"),
        "{msg}"
    );
}

#[cfg(unix)]
mod symlinks {
    use super::*;
    use std::os::unix::fs::symlink;

    /// root/secret.bin holds two floats; the model folder is root/model.
    fn layout() -> (tempfile::TempDir, std::path::PathBuf) {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("secret.bin"), floats(&[4.0, 5.0])).unwrap();
        let model = root.path().join("model");
        std::fs::create_dir(&model).unwrap();
        (root, model)
    }

    #[test]
    fn a_symlinked_file_out_of_the_folder_is_refused() {
        let (_root, model) = layout();
        symlink("../secret.bin", model.join("link.bin")).unwrap();
        let tp = external("w", &[2], &[("location", "link.bin")]);
        let err = decode(&tp, &in_dir(&model)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, TensorError::OutsideDir { .. }), "{msg}");
        assert!(
            msg.contains("tensor 'w'") && msg.contains("link.bin"),
            "{msg}"
        );
        assert!(msg.contains("secret.bin"), "{msg}");
        assert!(msg.contains("outside the model's folder"), "{msg}");
        assert!(msg.contains("--allow-external-outside-dir"), "{msg}");
    }

    #[test]
    fn a_symlinked_folder_out_of_the_folder_is_refused() {
        let (root, model) = layout();
        symlink(root.path(), model.join("shared")).unwrap();
        let tp = external("w", &[2], &[("location", "shared/secret.bin")]);
        let err = decode(&tp, &in_dir(&model)).unwrap_err();
        assert!(matches!(err, TensorError::OutsideDir { .. }), "{err}");
        assert_eq!(err.tensor(), "w");
    }

    #[test]
    fn the_opt_out_reads_through_symlinks() {
        let (_root, model) = layout();
        symlink("../secret.bin", model.join("link.bin")).unwrap();
        let tp = external("w", &[2], &[("location", "link.bin")]);
        let allow = ExternalPolicy {
            dir: Some(&model),
            allow_outside_dir: true,
        };
        let got = decode(&tp, &allow).unwrap();
        assert_eq!(got.data, TensorData::Raw(floats(&[4.0, 5.0])));
        // the location itself must still be relative, opt-out or not
        let up = external("w", &[2], &[("location", "../secret.bin")]);
        assert!(decode(&up, &allow).is_err());
    }

    #[test]
    fn symlinks_inside_the_folder_are_fine() {
        let (_root, model) = layout();
        std::fs::write(model.join("real.bin"), floats(&[6.0])).unwrap();
        symlink("real.bin", model.join("alias.bin")).unwrap();
        // and the model folder itself reached through a symlink
        let via = model.parent().unwrap().join("via");
        symlink(&model, &via).unwrap();
        let tp = external("w", &[1], &[("location", "alias.bin")]);
        let got = decode(&tp, &in_dir(&via)).unwrap();
        assert_eq!(got.data, TensorData::Raw(floats(&[6.0])));
    }
}
