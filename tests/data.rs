//! Datasets: the embedded digits, the toys, seeded shuffles and splits, and the IDX reader on
//! small files written here (including truncated, wrong-magic and corrupt-gzip files).

use flate2::write::GzEncoder;
use scoresde::data::idx::{self, Split};
use scoresde::data::{digits, Toy};
use scoresde::rng::seeded;
use scoresde::{stats, Error};
use std::io::Write;

/// The embedded digits: 1,797 rows of 64 pixels in [-1, 1], labels 0..9 with the UCI class
/// counts (178, 182, 177, 183, 181, 182, 181, 179, 174, 180), and pixel 0 of every image is 0
/// (scaled: -1) as in the UCI file, so the scaling `v/8 − 1` maps 0 to -1 and 16 to 1.
#[test]
fn embedded_digits_have_uci_shape_counts_and_range() {
    let d = digits::load().unwrap();
    assert_eq!((d.len(), d.dim()), (1797, 64));
    let labels = d.labels.as_ref().unwrap();
    let mut counts = [0usize; 10];
    for &l in labels {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    assert!(d.x.iter().all(|&v| (-1.0..=1.0).contains(&v)));
    assert!(d.x.column(0).iter().all(|&v| v == -1.0));
    assert!(d.x.iter().any(|&v| v == 1.0));
    // Row 0 of the file starts 0,0,5,13,9,1: pixel 2 is 5/8 − 1.
    assert_eq!(d.x[[0, 2]], 5.0 / 8.0 - 1.0);
    assert_eq!(labels[0], 0);
}

/// The digits parser rejects a wrong field count, a value out of range and non-gzip bytes.
#[test]
fn digits_parser_rejects_malformed_input() {
    let gz = |s: &str| {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(s.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let row = |pix: &str| format!("{}{pix},3\n", "0,".repeat(63));
    assert!(digits::parse_csv_gz(&gz(&row("16"))).is_ok());
    assert!(matches!(
        digits::parse_csv_gz(&gz(&row("17"))),
        Err(Error::Data(_))
    ));
    assert!(matches!(
        digits::parse_csv_gz(&gz("1,2,3\n")),
        Err(Error::Data(_))
    ));
    assert!(matches!(
        digits::parse_csv_gz(&gz(&row("x"))),
        Err(Error::Data(_))
    ));
    assert!(matches!(
        digits::parse_csv_gz(b"plain text"),
        Err(Error::Data(_))
    ));
}

/// Shuffles and splits depend only on the seed, are permutations, and partition the data.
#[test]
fn seeded_split_is_a_reproducible_partition() {
    let d = digits::load().unwrap();
    let (a, b) = d.split(0.1, 7).unwrap();
    let (a2, _) = d.split(0.1, 7).unwrap();
    assert_eq!(a.x, a2.x);
    assert_eq!((a.len(), b.len()), (1617, 180));
    let (c, _) = d.split(0.1, 8).unwrap();
    assert_ne!(a.x, c.x);
    // Partition: the multiset of row sums is preserved.
    let key = |ds: &scoresde::data::Dataset| -> Vec<i64> {
        ds.x.rows()
            .into_iter()
            .map(|r| (r.sum() * 8.0) as i64)
            .collect()
    };
    let mut all = key(&a);
    all.extend(key(&b));
    all.sort_unstable();
    let mut orig = key(&d);
    orig.sort_unstable();
    assert_eq!(all, orig);
    assert!(d.split(0.0, 1).is_err());
    assert!(d.split(1.0, 1).is_err());
}

/// The mixture toys draw from their mixtures: an energy two-sample test against independent
/// draws of the same mixture does not reject at 1% (false-alarm rate 1%), and its twin, the same
/// test against a wrong sampler that folds every draw onto the left half-plane (a mode-selection
/// bug: 4 of the 8 modes, mean moved from 0 to (-1.3, 0), 13 standard errors at 300 points),
/// rejects.
#[test]
fn toy_mixture_samples_pass_two_sample_test_and_rotated_twin_fails() {
    let toy = Toy::Ring8;
    let m = toy.mixture().unwrap();
    let x = toy.sample(300, &mut seeded(1));
    let y = m.sample_n(300, &mut seeded(2));
    let t = stats::energy_test(x.view(), y.view(), 199, 3).unwrap();
    assert!(!t.rejects(0.01), "p = {}", t.p_value);
    let mut r = y.clone();
    for mut row in r.rows_mut() {
        row[0] = -row[0].abs();
    }
    let twin = stats::energy_test(x.view(), r.view(), 199, 3).unwrap();
    assert!(twin.rejects(0.01), "twin p = {}", twin.p_value);
}

/// The sampler toys produce finite points in their documented regions: checkerboard on the
/// dark squares of [-2,2]², rings near radii 0.75/1.5/2.25, and every toy by name.
#[test]
fn sampler_toys_lie_in_their_regions() {
    let c = Toy::Checkerboard.sample(500, &mut seeded(1));
    for r in c.rows() {
        assert!(r[0].abs() <= 2.0 && r[1].abs() <= 2.0);
        assert_eq!((r[0].floor() as i64 + r[1].floor() as i64).rem_euclid(2), 0);
    }
    let rings = Toy::Rings.sample(500, &mut seeded(2));
    for r in rings.rows() {
        let rad = r[0].hypot(r[1]);
        // Noise std 0.05: 8 sigma = 0.4 would overlap; 0.3 is 6 sigma (false alarm ~1e-9 each).
        assert!(
            [0.75, 1.5, 2.25].iter().any(|&q| (rad - q).abs() < 0.3),
            "radius {rad}"
        );
    }
    for (name, toy) in Toy::ALL {
        assert_eq!(Toy::from_name(name).unwrap(), toy);
        let s = toy.sample(50, &mut seeded(3));
        assert!(s.iter().all(|v| v.is_finite() && v.abs() < 10.0));
    }
    assert!(Toy::from_name("spiral").is_err());
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// An MNIST-format directory written here (3 images of 2×2, raw images, gzipped labels)
/// loads with the right shape, scaling and labels.
#[test]
fn idx_directory_of_raw_and_gz_files_loads() {
    let dir = tempdir("ok");
    let pix: Vec<u8> = (0..12).map(|i| (i * 20) as u8).collect();
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        idx_bytes(&[3, 2, 2], &pix),
    )
    .unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte.gz"),
        gzip(&idx_bytes(&[3], &[7, 0, 9])),
    )
    .unwrap();
    let d = idx::load_mnist_dir(&dir, Split::Train).unwrap();
    assert_eq!((d.len(), d.dim()), (3, 4));
    assert_eq!(d.labels.as_deref(), Some(&[7u8, 0, 9][..]));
    assert_eq!(d.x[[0, 0]], -1.0);
    assert_eq!(d.x[[1, 1]], 100.0 / 127.5 - 1.0);
    assert!(matches!(
        idx::load_mnist_dir(&dir, Split::Test),
        Err(Error::Data(_))
    ));
}

/// Corrupt files give `Error::Data` naming the problem: truncated data, truncated header,
/// wrong magic, unsupported element type, a corrupt gzip stream, trailing bytes, and image /
/// label count mismatch.
#[test]
fn corrupt_idx_files_give_clear_errors() {
    let good = idx_bytes(&[2, 2, 2], &[1; 8]);
    let msg = |b: &[u8]| match idx::parse(b, "f") {
        Err(Error::Data(m)) => m,
        other => panic!("expected a data error, got {other:?}"),
    };
    assert!(idx::parse(&good, "f").is_ok());
    assert!(msg(&good[..good.len() - 1]).contains("truncated"));
    assert!(msg(&good[..6]).contains("truncated header"));
    let mut wrong = good.clone();
    wrong[0] = 0x50;
    assert!(msg(&wrong).contains("magic"));
    let mut ty = good.clone();
    ty[2] = 0x0d;
    assert!(msg(&ty).contains("element type"));
    let mut gz = gzip(&good);
    let n = gz.len();
    gz.truncate(n / 2);
    assert!(msg(&gz).contains("gzip"));
    let mut extra = good.clone();
    extra.push(0);
    assert!(msg(&extra).contains("trailing"));
    let dir = tempdir("bad");
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        idx_bytes(&[2, 1, 1], &[0, 0]),
    )
    .unwrap();
    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte"),
        idx_bytes(&[3], &[0, 0, 0]),
    )
    .unwrap();
    assert!(
        matches!(idx::load_mnist_dir(&dir, Split::Test), Err(Error::Data(m)) if m.contains("labels"))
    );
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("scoresde-data-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
