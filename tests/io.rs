//! Tensor files: `.npy` and safetensors, against files numpy and the Python
//! safetensors package wrote (tests/data/io, see make_reference.py there), and
//! against hand-built corrupt files.

#[path = "common/tmp.rs"]
mod tmp;

use netc::io::{self, IoErrorKind};
use netc::tensor::{Data, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tmp::Scratch;

fn reference(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/io").join(name)
}

/// A version 1.0 `.npy` file with the given header dict and data bytes.
fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = dict.to_string();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn decode_err(bytes: &[u8]) -> String {
    io::decode_npy(bytes).unwrap_err().to_string()
}

#[test]
fn reads_what_numpy_wrote() {
    let read = |name| io::read_npy(reference(name)).unwrap();
    assert_eq!(
        read("f4_2x3.npy"),
        Tensor::f32(vec![2, 3], vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.25])
    );
    assert_eq!(read("f8_scalar.npy"), Tensor::f64(vec![], vec![-1.5]));
    assert_eq!(read("i8_vec.npy"), Tensor::i64(vec![3], vec![-3, 0, 1 << 40]));
    assert_eq!(read("u1_2x2.npy"), Tensor::i64(vec![2, 2], vec![0, 255, 7, 128]));
    assert_eq!(read("i2_big_endian.npy"), Tensor::i64(vec![3], vec![1, -2, 300]));
    assert_eq!(read("b1.npy"), Tensor::i64(vec![3], vec![1, 0, 1]));
    assert_eq!(read("f2.npy"), Tensor::f32(vec![3], vec![0.5, -2.0, 65504.0]));
    assert_eq!(
        read("f4_fortran_2x3x4.npy"),
        Tensor::f32(vec![2, 3, 4], (0..24).map(|x| x as f32).collect())
    );
    assert_eq!(read("i4_v2.npy"), Tensor::i64(vec![2, 2], vec![1, 2, 3, -4]));
    assert_eq!(read("f8_v3.npy"), Tensor::f64(vec![2], vec![0.25, 1e300]));
}

#[test]
fn writes_byte_identical_to_numpy() {
    for name in ["f4_2x3.npy", "f8_scalar.npy", "i8_vec.npy"] {
        let theirs = std::fs::read(reference(name)).unwrap();
        let tensor = io::decode_npy(&theirs).unwrap();
        assert_eq!(io::encode_npy(&tensor).unwrap(), theirs, "{name}");
    }
}

#[test]
fn npy_round_trips_every_dtype_and_shape() {
    let dir = Scratch::new("npy-roundtrip");
    let cases = [
        Tensor::f32(vec![2, 2], vec![1.5, -0.0, f32::MAX, f32::MIN_POSITIVE]),
        Tensor::f64(vec![3], vec![std::f64::consts::PI, -1e-300, 7.0]),
        Tensor::i64(vec![1, 2, 1], vec![i64::MIN, i64::MAX]),
        Tensor::f32(vec![], vec![42.0]),
        Tensor::i64(vec![0, 5], vec![]),
        // A header over 64 KiB needs format version 2.0.
        Tensor::f64(vec![1; 30_000], vec![9.0]),
    ];
    for (i, t) in cases.iter().enumerate() {
        let path = dir.join(&format!("{i}.npy"));
        io::write_npy(&path, t).unwrap();
        assert_eq!(&io::read_npy(&path).unwrap(), t, "case {i}");
    }
    let big_header = std::fs::read(dir.join("5.npy")).unwrap();
    assert_eq!(big_header[6], 2, "the 30000-dim header needs version 2.0");
    assert_eq!(dir.count(), cases.len(), "no temporary files are left behind");
}

#[test]
fn npy_nan_bits_survive() {
    let t = Tensor::f32(vec![1], vec![f32::from_bits(0x7fc0_1234)]);
    let back = io::decode_npy(&io::encode_npy(&t).unwrap()).unwrap();
    let Data::F32(v) = back.data else { panic!() };
    assert_eq!(v[0].to_bits(), 0x7fc0_1234);
}

#[test]
fn npy_errors_name_the_file_and_the_problem() {
    let dir = Scratch::new("npy-errors");
    let path = dir.join("weights.npy");
    std::fs::write(&path, b"PK\x03\x04 this is a zip").unwrap();
    let err = io::read_npy(&path).unwrap_err();
    assert_eq!(err.path, path);
    let msg = err.to_string();
    assert!(msg.contains("weights.npy") && msg.contains("not an .npy file"), "{msg}");
    assert!(msg.contains("50 4b 03 04"), "{msg}");

    let missing = io::read_npy(dir.join("absent.npy")).unwrap_err();
    assert!(matches!(missing.kind, IoErrorKind::Os(_)));
    assert!(missing.to_string().contains("absent.npy"));

    assert!(decode_err(b"").contains("empty"));
}

#[test]
fn npy_truncation_is_reported_with_byte_counts() {
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    let full = npy_bytes(dict, &[0u8; 24]);
    let msg = decode_err(&full[..full.len() - 5]);
    assert_eq!(msg, "truncated: expected 24 bytes of data, found 19");
    let msg = decode_err(&full[..40]);
    assert!(msg.starts_with("truncated: expected 118 bytes of header"), "{msg}");
    assert!(decode_err(&full[..9]).contains("header length"));

    let mut long = full.clone();
    long.extend_from_slice(&[0; 4]);
    assert!(decode_err(&long).contains("4 bytes after the 24 bytes of data"));
}

#[test]
fn npy_rejects_unsupported_dtypes_with_a_hint() {
    for (descr, hint) in [
        ("<c8", "complex"),
        ("|S3", "strings"),
        ("<M8[ns]", "dates"),
        ("<f16", "float sizes"),
    ] {
        let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}");
        let msg = decode_err(&npy_bytes(&dict, &[0; 16]));
        assert!(
            msg.contains(&format!("unsupported dtype `{descr}`")) && msg.contains(hint),
            "{msg}"
        );
    }
    let structured = "{'descr': [('x', '<f4'), ('y', '<i4')], 'fortran_order': False, 'shape': (1,), }";
    assert!(decode_err(&npy_bytes(structured, &[0; 8])).contains("structured"));
}

#[test]
fn npy_malicious_headers_are_errors_not_panics() {
    let cases = [
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
            "more elements",
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,), }",
            "too large",
        ),
        (
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000000,), }",
            "truncated: expected 8000000000000000 bytes of data",
        ),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", "negative"),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), ",
            "ends early",
        ),
        (
            "{'descr': '<f4', 'fortran_order': 'no', 'shape': (2,), }",
            "fortran_order",
        ),
        ("{'descr': '<f4', 'shape': (2,), }", "fortran_order"),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } trailing",
            "after the dictionary",
        ),
        ("[1, 2, 3]", "not a dictionary"),
        ("{'descr: '<f4'}", "expected"),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': ('a',), }",
            "not a dimension",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': os.system('x'), }",
            "unexpected word",
        ),
    ];
    for (dict, expected) in cases {
        let msg = decode_err(&npy_bytes(dict, &[0; 8]));
        assert!(msg.contains(expected), "{dict}: {msg}");
    }
    let mut v4 = npy_bytes("{}", &[]);
    v4[6] = 4;
    assert!(decode_err(&v4).contains("version 4.0"));
    let u64_big = npy_bytes(
        "{'descr': '<u8', 'fortran_order': False, 'shape': (1,), }",
        &u64::MAX.to_le_bytes(),
    );
    assert!(decode_err(&u64_big).contains("does not fit in i64"));
}

fn state_dict() -> BTreeMap<String, Tensor> {
    BTreeMap::from([
        (
            "conv1.weight".to_string(),
            Tensor::f32(vec![2, 1, 2, 2], (0..8).map(|x| x as f32 * 0.5).collect()),
        ),
        ("conv1.bias".to_string(), Tensor::f64(vec![2], vec![-1.0, 1e-10])),
        ("num_batches_tracked".to_string(), Tensor::i64(vec![], vec![123])),
        ("empty".to_string(), Tensor::f32(vec![0], vec![])),
    ])
}

#[test]
fn safetensors_reads_what_python_wrote() {
    let (tensors, metadata) = io::read_safetensors_with_metadata(reference("state_dict.safetensors")).unwrap();
    assert_eq!(metadata.get("format").map(String::as_str), Some("pt"));
    assert_eq!(
        tensors["conv1.weight"],
        Tensor::f32(vec![2, 1, 2, 2], (0..8).map(|x| x as f32 - 4.0).collect())
    );
    assert_eq!(tensors["fc.bias"], Tensor::f32(vec![3], vec![0.5, -1.0, 2.0]));
    assert_eq!(tensors["step"], Tensor::i64(vec![1], vec![7]));
    assert_eq!(tensors.len(), 3);
}

#[test]
fn safetensors_round_trips_with_metadata() {
    let dir = Scratch::new("st-roundtrip");
    let path = dir.join("model.safetensors");
    io::write_safetensors(&path, &state_dict()).unwrap();
    let (back, metadata) = io::read_safetensors_with_metadata(&path).unwrap();
    assert_eq!(back, state_dict());
    assert_eq!(metadata, BTreeMap::from([("format".to_string(), "pt".to_string())]));

    let mine = BTreeMap::from([
        ("format".to_string(), "netc".to_string()),
        ("epoch".to_string(), "3".to_string()),
    ]);
    io::write_safetensors_with_metadata(&path, &state_dict(), &mine).unwrap();
    let (_, metadata) = io::read_safetensors_with_metadata(&path).unwrap();
    assert_eq!(metadata, mine);
    assert_eq!(dir.count(), 1, "no temp files left");
}

/// A safetensors file built by hand, for dtypes numpy cannot write.
fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn safetensors_widens_bf16_and_small_integers() {
    let bf16: Vec<u8> = [1.5f32, -2.0, 0.15625]
        .iter()
        .flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes())
        .collect();
    let mut data = bf16;
    data.extend_from_slice(&[0xff, 0x01]); // i8: -1, 1
    data.extend_from_slice(&[1, 0]); // bool
    let header = r#"{"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"I8","shape":[2],"data_offsets":[6,8]},"c":{"dtype":"BOOL","shape":[2],"data_offsets":[8,10]}}"#;
    let (t, _) = io::decode_safetensors(&safetensors_bytes(header, &data)).unwrap();
    assert_eq!(t["a"], Tensor::f32(vec![3], vec![1.5, -2.0, 0.15625]));
    assert_eq!(t["b"], Tensor::i64(vec![2], vec![-1, 1]));
    assert_eq!(t["c"], Tensor::i64(vec![2], vec![1, 0]));
}

#[test]
fn safetensors_errors_name_the_file_and_tensor() {
    let dir = Scratch::new("st-errors");
    let good = io::encode_safetensors(&state_dict(), &BTreeMap::new()).unwrap();
    let path = dir.join("ckpt.safetensors");

    std::fs::write(&path, &good[..good.len() - 3]).unwrap();
    let msg = io::read_safetensors(&path).unwrap_err().to_string();
    assert!(msg.contains("ckpt.safetensors") && msg.contains("truncated"), "{msg}");
    assert!(msg.contains("bytes of tensor data"), "{msg}");

    std::fs::write(&path, &good[..20]).unwrap();
    let msg = io::read_safetensors(&path).unwrap_err().to_string();
    assert!(
        msg.contains("truncated: expected") && msg.contains("bytes of header"),
        "{msg}"
    );

    std::fs::write(&path, &good[..3]).unwrap();
    let msg = io::read_safetensors(&path).unwrap_err().to_string();
    assert!(msg.contains("expected 8 bytes of header length, found 3"), "{msg}");

    let mut huge = good.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(io::decode_safetensors(&huge)
        .unwrap_err()
        .to_string()
        .contains("truncated"));

    let bad_json = safetensors_bytes("{not json", &[]);
    assert!(io::decode_safetensors(&bad_json)
        .unwrap_err()
        .to_string()
        .contains("header not parsable"));

    let fp8 = safetensors_bytes(
        r#"{"layer.scale":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#,
        &[0, 0],
    );
    let msg = io::decode_safetensors(&fp8).unwrap_err().to_string();
    assert!(msg.contains("tensor `layer.scale`") && msg.contains("F8_E4M3"), "{msg}");

    let overlapping = safetensors_bytes(r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#, &[0; 8]);
    assert!(io::decode_safetensors(&overlapping).is_err());
}

#[test]
fn safetensors_writer_refuses_what_it_cannot_represent() {
    let reserved = BTreeMap::from([("__metadata__".to_string(), Tensor::f32(vec![1], vec![0.0]))]);
    let msg = io::encode_safetensors(&reserved, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("reserved"), "{msg}");

    let broken = Tensor {
        shape: vec![2, 2],
        data: Data::F32(vec![1.0]),
    };
    let inconsistent = BTreeMap::from([("fc.weight".to_string(), broken.clone())]);
    let msg = io::encode_safetensors(&inconsistent, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("fc.weight") && msg.contains("4 elements"), "{msg}");
    assert!(io::encode_npy(&broken).is_err());
}
