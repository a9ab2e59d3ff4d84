//! MNIST-style IDX files (`train-images-idx3-ubyte[.gz]` and friends), gzipped or raw.
//! Only unsigned-byte data (type 0x08), which is what MNIST and Fashion-MNIST use.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::image::{fit_raw, FitCounts, ImageSpec};
use super::{Dataset, Targets};
use crate::error::{Error, Result};

pub const FASHION_MNIST_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// An IDX array of bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file, gunzipping it when it starts with the gzip magic.
pub fn read_idx(path: &Path) -> Result<Idx> {
    let raw = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read the IDX file: {e}")))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::file(path, format!("the gzip data is damaged ({e}); download the file again")))?;
        out
    } else {
        raw
    };
    parse_idx(path, &bytes)
}

/// Parses IDX bytes; `path` only names the source in errors.
pub fn parse_idx(path: &Path, bytes: &[u8]) -> Result<Idx> {
    if bytes.is_empty() {
        return Err(Error::file(path, "the IDX file is empty"));
    }
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        let magic: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(Error::file(
            path,
            format!(
                "not an IDX file (magic {} should start 00 00); expected e.g. train-images-idx3-ubyte from MNIST",
                magic.join(" ")
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(Error::file(
            path,
            format!("IDX data type 0x{:02x} is not supported; tailor reads unsigned bytes (0x08)", bytes[2]),
        ));
    }
    let nd = bytes[3] as usize;
    let header = 4 + 4 * nd;
    if nd == 0 || bytes.len() < header {
        return Err(Error::file(
            path,
            format!("truncated IDX header: {} bytes, {nd} dimensions need {header}", bytes.len()),
        ));
    }
    let dims: Vec<usize> =
        bytes[4..header].chunks(4).map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize).collect();
    let want = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let data = &bytes[header..];
    match want {
        Some(n) if n == data.len() => Ok(Idx { dims, data: data.to_vec() }),
        Some(n) if n > data.len() => Err(Error::file(
            path,
            format!("truncated IDX file: dimensions {dims:?} need {n} data bytes but only {} are there; download the file again", data.len()),
        )),
        _ => Err(Error::file(path, format!("IDX dimensions {dims:?} do not match the {} data bytes in the file", data.len()))),
    }
}

/// An MNIST-style folder and which half to read.
#[derive(Clone, Debug)]
pub struct IdxSpec {
    pub dir: PathBuf,
    /// File prefix: "train" or "t10k".
    pub prefix: String,
    /// Class names; `None`: Fashion-MNIST's when the folder name says fashion, else the digits.
    pub names: Option<Vec<String>>,
}

impl IdxSpec {
    pub fn new(dir: impl Into<PathBuf>, prefix: &str) -> Self {
        IdxSpec { dir: dir.into(), prefix: prefix.into(), names: None }
    }
}

/// Loads `<prefix>-images-idx3-ubyte[.gz]` and `<prefix>-labels-idx1-ubyte[.gz]` from a folder.
pub fn load_idx(spec: &IdxSpec, image: &ImageSpec) -> Result<Dataset> {
    let img_path = find(&spec.dir, &spec.prefix, "images-idx3-ubyte")?;
    let lab_path = find(&spec.dir, &spec.prefix, "labels-idx1-ubyte")?;
    let images = read_idx(&img_path)?;
    let labels = read_idx(&lab_path)?;
    if images.dims.len() != 3 {
        return Err(Error::file(
            &img_path,
            format!("an image file has 3 dimensions (count, rows, columns), this one {:?}", images.dims),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(Error::file(&lab_path, format!("a label file has 1 dimension, this one {:?}", labels.dims)));
    }
    let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    if n == 0 || h == 0 || w == 0 {
        return Err(Error::file(&img_path, format!("the IDX file holds no images (dimensions {:?})", images.dims)));
    }
    if labels.dims[0] != n {
        return Err(Error::file(
            &lab_path,
            format!("{} labels for {n} images in {}", labels.dims[0], img_path.display()),
        ));
    }
    if spec.names.is_none() {
        check_dense_labels(&lab_path, &labels.data)?;
    }
    let names = class_names(spec, &labels.data);
    if let Some((i, &l)) = labels.data.iter().enumerate().find(|(_, &l)| l as usize >= names.len()) {
        return Err(Error::file(
            &lab_path,
            format!("label {l} of image {i} is not below the {} class names given", names.len()),
        ));
    }
    super::image::check_fits_in_memory(n, image)?;
    let pixels = fit_all(&images.data, n, w, h, image);
    // Every image has the file's size and one gray channel.
    let fitted = FitCounts::of_size(w, h, image.channels == 3, image).times(n);
    Ok(Dataset {
        width: image.width,
        height: image.height,
        channels: image.channels,
        pixels,
        targets: Targets::Single(labels.data.iter().map(|&l| l as u32).collect()),
        label_names: names,
        table: None,
        records: Vec::new(),
        warnings: Vec::new(),
        notes: fitted.note(image).into_iter().collect(),
    })
}

/// The (width, height) of the images in `<prefix>-images-idx3-ubyte[.gz]`, from its header only.
pub fn idx_image_size(dir: &Path, prefix: &str) -> Result<(usize, usize)> {
    let path = find(dir, prefix, "images-idx3-ubyte")?;
    let file = std::fs::File::open(&path).map_err(|e| Error::file(&path, format!("cannot read the IDX file: {e}")))?;
    let mut head = [0u8; 16];
    let mut raw = std::io::BufReader::new(file);
    let mut magic = [0u8; 2];
    raw.read_exact(&mut magic).map_err(|e| Error::file(&path, format!("cannot read the IDX header: {e}")))?;
    let mut rest = std::io::Cursor::new(magic).chain(raw);
    let read =
        if magic == [0x1f, 0x8b] { GzDecoder::new(rest).read_exact(&mut head) } else { rest.read_exact(&mut head) };
    read.map_err(|e| Error::file(&path, format!("the IDX header is cut short or damaged ({e})")))?;
    if head[2] != 0x08 || head[3] != 3 {
        return Err(Error::file(&path, "not an IDX file of images (unsigned bytes, 3 dimensions)"));
    }
    let dim = |i: usize| u32::from_be_bytes(head[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize;
    Ok((dim(2), dim(1)))
}

fn find(dir: &Path, prefix: &str, kind: &str) -> Result<PathBuf> {
    let dotted = kind.replacen('-', ".", 1);
    let names = [
        format!("{prefix}-{kind}.gz"),
        format!("{prefix}-{kind}"),
        format!("{prefix}-{dotted}.gz"),
        format!("{prefix}-{dotted}"),
    ];
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file()).ok_or_else(|| {
        Error::file(
            dir,
            format!(
                "no {} file here (looked for {}); point to a folder with MNIST-style IDX files",
                kind,
                names.join(", ")
            ),
        )
    })
}

/// The class ids of an IDX label file are its classes, so a stray byte (a 200 among 0..9) would
/// make hundreds of classes without samples, and `--min-samples 1` would then train the stray one
/// with the largest class weight. Ids 0..9 are always classes (the digits, Fashion-MNIST), so a
/// subset that leaves some of them out is left to the split's check; above 9, every id up to the
/// largest must occur.
fn check_dense_labels(path: &Path, labels: &[u8]) -> Result<()> {
    let mut counts = [0usize; 256];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    let max = labels.iter().copied().max().map_or(0, |m| m as usize);
    let Some(gap) = (10..max).find(|&l| counts[l] == 0) else { return Ok(()) };
    let present: Vec<usize> = (0..=max).filter(|&l| counts[l] > 0).collect();
    let stray: Vec<usize> = present.iter().copied().filter(|&l| l > gap).collect();
    let shown: Vec<String> = stray
        .iter()
        .take(3)
        .map(|&l| {
            let first = labels.iter().position(|&x| x as usize == l).unwrap_or(0);
            format!("{l} (in {} image(s), the first is image {first})", counts[l])
        })
        .collect();
    let (noun, verb) = if stray.len() == 1 { ("label", "stands") } else { ("labels", "stand") };
    Err(Error::file(
        path,
        format!(
            "the labels run up to {max}, but only {} distinct values occur ({}), so {} of the {} classes would \
             have no samples; {noun} {}{} {verb} apart from the rest: the label file looks corrupt, so download \
             it again (or, if the gaps are meant, renumber the labels to 0..{})",
            present.len(),
            ranges(&present),
            max + 1 - present.len(),
            max + 1,
            shown.join(", "),
            if stray.len() > 3 { ", …" } else { "" },
            present.len() - 1
        ),
    ))
}

/// Sorted ids as runs: "0-9, 12, 200".
fn ranges(ids: &[usize]) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &i in ids {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => runs.push((i, i)),
        }
    }
    let run = |&(a, b): &(usize, usize)| if a == b { a.to_string() } else { format!("{a}-{b}") };
    runs.iter().map(run).collect::<Vec<_>>().join(", ")
}

fn class_names(spec: &IdxSpec, labels: &[u8]) -> Vec<String> {
    if let Some(n) = &spec.names {
        return n.clone();
    }
    let fashion =
        spec.dir.components().any(|c| c.as_os_str().to_string_lossy().to_ascii_lowercase().contains("fashion"));
    let max = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    if fashion && max <= 10 {
        FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect()
    } else {
        (0..max).map(|i| i.to_string()).collect()
    }
}

fn fit_all(data: &[u8], n: usize, w: usize, h: usize, spec: &ImageSpec) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * spec.len());
    for img in data.chunks(w * h) {
        if spec.channels == 3 {
            let rgb: Vec<u8> = img.iter().flat_map(|&v| [v, v, v]).collect();
            out.extend(fit_raw(&rgb, w, h, spec));
        } else {
            out.extend(fit_raw(img, w, h, spec));
        }
    }
    out
}
