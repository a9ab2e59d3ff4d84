//! Decoding, fitting to the input size, normalisation and augmentation. The per-batch path
//! matches torchvision's `ToTensor` + `Normalize` (and `RandomCrop(padding)` +
//! `RandomHorizontalFlip`): RGB, x / 255, (x − mean) / std, CHW f32.

use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageBuffer, Pixel, RgbImage};

use crate::error::{Error, Result};
use crate::rng::Rng;

/// The size and channels every image is fitted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub width: usize,
    pub height: usize,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// The value of the padding around an image whose aspect ratio differs from the target's.
    pub fill: u8,
}

impl ImageSpec {
    pub fn new(width: usize, height: usize, channels: usize) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::Invalid(format!(
                "image size {width}×{height} is empty; give a positive size such as 32 or 48x64"
            )));
        }
        if channels != 1 && channels != 3 {
            return Err(Error::Invalid(format!("{channels} image channels: use 1 (gray) or 3 (RGB)")));
        }
        Ok(ImageSpec { width, height, channels, fill: 0 })
    }
    /// Parses "32" (square) or "48x64" (width × height).
    pub fn parse_size(s: &str) -> Result<(usize, usize)> {
        let bad = || Error::Invalid(format!("image size '{s}': give N for N×N or WxH such as 48x64"));
        let num = |t: &str| t.trim().parse::<usize>().ok().filter(|&v| v > 0).ok_or_else(bad);
        match s.split_once(['x', 'X', '×']) {
            Some((w, h)) => Ok((num(w)?, num(h)?)),
            None => num(s).map(|n| (n, n)),
        }
    }
    /// Bytes of one fitted image.
    pub fn len(&self) -> usize {
        self.width * self.height * self.channels
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How images become model input: the size and channels they are fitted to and the per-channel
/// normalisation (a run's `config.json` keeps it, so that inference does what training did).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Preprocess {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Preprocess {
    pub fn image_spec(&self) -> Result<ImageSpec> {
        ImageSpec::new(self.width, self.height, self.channels)
    }
    pub fn normalize(&self) -> Normalize {
        Normalize { mean: self.mean.clone(), std: self.std.clone() }
    }
}

/// Per-channel mean and standard deviation, applied after dividing by 255.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalize {
    /// ImageNet's statistics for RGB, (0.5, 0.5) for gray.
    pub fn default_for(channels: usize) -> Self {
        if channels == 3 {
            Normalize { mean: vec![0.485, 0.456, 0.406], std: vec![0.229, 0.224, 0.225] }
        } else {
            Normalize { mean: vec![0.5; channels], std: vec![0.5; channels] }
        }
    }
    /// Checks that there is one positive std and one mean per channel.
    pub fn check(&self, channels: usize) -> Result<()> {
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(Error::Invalid(format!(
                "normalisation has {} means and {} stds for {channels}-channel images; give one of each per channel",
                self.mean.len(),
                self.std.len()
            )));
        }
        if self.std.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
            return Err(Error::Invalid(format!("normalisation std {:?} must be positive", self.std)));
        }
        Ok(())
    }
}

/// Training-time augmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Augment {
    /// Zero padding on every side before a random crop back to the image size (0: no crop).
    pub crop_padding: usize,
    /// Mirror left-right with probability 1/2.
    pub hflip: bool,
}

impl Augment {
    pub fn is_none(&self) -> bool {
        self.crop_padding == 0 && !self.hflip
    }
    /// Draws this sample's crop offset (into the padded image) and flip, in torchvision's order.
    pub fn draw(&self, rng: &mut Rng) -> Placement {
        let p = self.crop_padding;
        let (dy, dx) = if p > 0 { (rng.below(2 * p + 1), rng.below(2 * p + 1)) } else { (p, p) };
        let flip = self.hflip && rng.uniform() < 0.5;
        Placement { dy: dy as isize - p as isize, dx: dx as isize - p as isize, flip }
    }
}

/// Where an output pixel reads from: source (y + dy, x + dx) of the (flipped) image; zero outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Placement {
    pub dy: isize,
    pub dx: isize,
    pub flip: bool,
}

/// Writes one HWC `u8` image as normalised CHW f32 into `out` (`c * h * w` values).
pub fn to_chw(src: &[u8], spec: &ImageSpec, norm: &Normalize, place: Placement, out: &mut [f32]) {
    let (w, h, c) = (spec.width, spec.height, spec.channels);
    for ch in 0..c {
        let (mean, std) = (norm.mean[ch], norm.std[ch]);
        let zero = (0.0 - mean) / std;
        let plane = &mut out[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            let sy = y as isize + place.dy;
            for x in 0..w {
                let cx = if place.flip { w - 1 - x } else { x };
                let sx = cx as isize + place.dx;
                plane[y * w + x] = if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                    zero
                } else {
                    let v = src[(sy as usize * w + sx as usize) * c + ch];
                    (v as f32 / 255.0 - mean) / std
                };
            }
        }
    }
}

/// How many images fitting changed, so that a dataset says so in one note instead of silently
/// (or once per image).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FitCounts {
    pub images: usize,
    /// Not of the input size: scaled (keeping the aspect ratio) and, if need be, padded.
    pub resized: usize,
    /// Of another aspect ratio than the input: padded after scaling (letterboxed).
    pub letterboxed: usize,
    /// Of other channels than the input: colour to gray, gray to RGB, or alpha dropped.
    pub converted: usize,
}

impl FitCounts {
    /// What [`fit`] does to one `w` × `h` image (`converted`: its channels differ from the spec's).
    pub fn of_size(w: usize, h: usize, converted: bool, spec: &ImageSpec) -> Self {
        let resized = (w, h) != (spec.width, spec.height);
        let letterboxed = resized && scaled_size(w, h, spec) != (spec.width, spec.height);
        FitCounts {
            images: 1,
            resized: resized as usize,
            letterboxed: letterboxed as usize,
            converted: converted as usize,
        }
    }

    /// What [`fit`] does to `img`.
    pub fn of(img: &DynamicImage, spec: &ImageSpec) -> Self {
        let color = img.color();
        let converted = color.has_alpha() || color.has_color() != (spec.channels == 3);
        Self::of_size(img.width() as usize, img.height() as usize, converted, spec)
    }

    /// These counts `n` times (`n` images alike).
    pub fn times(self, n: usize) -> Self {
        FitCounts {
            images: self.images * n,
            resized: self.resized * n,
            letterboxed: self.letterboxed * n,
            converted: self.converted * n,
        }
    }

    pub fn add(&mut self, o: FitCounts) {
        self.images += o.images;
        self.resized += o.resized;
        self.letterboxed += o.letterboxed;
        self.converted += o.converted;
    }

    /// One line saying what fitting to `spec` did, or `None` when it left every image as it was.
    pub fn note(&self, spec: &ImageSpec) -> Option<String> {
        let n = self.images;
        let kind = if spec.channels == 3 { "RGB" } else { "gray" };
        let mut parts = Vec::new();
        if self.resized > 0 {
            let mut p = format!("{} of {n} image(s) were resized to that size", self.resized);
            if self.letterboxed > 0 {
                p += &format!(
                    " ({} of them letterboxed: scaled to keep their aspect ratio, then padded)",
                    self.letterboxed
                );
            }
            parts.push(p);
        }
        if self.converted > 0 {
            let how = if spec.channels == 3 { " (from gray, or without their alpha)" } else { "" };
            parts.push(format!("{} of {n} were converted to {kind}{how}", self.converted));
        }
        (!parts.is_empty())
            .then(|| format!("the model's input is {}×{} {kind}: {}", spec.width, spec.height, parts.join("; ")))
    }
}

/// Image files decoded, fitted to `spec` and normalised, as model input (CHW, one image after
/// another), with what fitting did to them.
pub fn load_input(paths: &[impl AsRef<Path>], spec: &ImageSpec, norm: &Normalize) -> Result<(Vec<f32>, FitCounts)> {
    let n = spec.len();
    let mut input = vec![0f32; paths.len() * n];
    let mut fitted = FitCounts::default();
    for (path, out) in paths.iter().zip(input.chunks_mut(n)) {
        let (px, counts) = load_fitted(path.as_ref(), spec)?;
        to_chw(&px, spec, norm, Placement::default(), out);
        fitted.add(counts);
    }
    Ok((input, fitted))
}

/// Reads and decodes an image file, fitted to `spec`, as HWC `u8`.
pub fn load_image(path: &Path, spec: &ImageSpec) -> Result<Vec<u8>> {
    Ok(load_fitted(path, spec)?.0)
}

/// [`load_image`], with what fitting did to the image.
pub fn load_fitted(path: &Path, spec: &ImageSpec) -> Result<(Vec<u8>, FitCounts)> {
    let img = decode(path)?;
    Ok((fit(&img, spec), FitCounts::of(&img, spec)))
}

fn decode(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read the image: {e}")))?;
    if bytes.is_empty() {
        return Err(Error::file(path, "the image file is empty (0 bytes); replace it (or leave it out of the data)"));
    }
    decode_bytes(&bytes)
        .map_err(|msg| Error::file(path, format!("{msg}; replace the file (or leave it out of the data)")))
}

/// Decodes a PNG or JPEG upright: turned as its EXIF orientation says, as image viewers show it
/// (a phone's portrait photo is stored sideways with an orientation tag). Errors say what is
/// wrong with the file.
fn decode_bytes(bytes: &[u8]) -> std::result::Result<DynamicImage, String> {
    use image::{ImageDecoder, ImageError, ImageFormat};
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the image ({e})"))?;
    let format = reader.format();
    let unsupported = || match format {
        Some(f) => format!("cannot decode the image: it is a {f:?} file, and tailor reads PNG and JPEG"),
        None => "cannot decode the image: it is not a PNG or JPEG file (the formats tailor reads)".to_string(),
    };
    if !matches!(format, Some(ImageFormat::Png | ImageFormat::Jpeg)) {
        return Err(unsupported());
    }
    if format == Some(ImageFormat::Jpeg) && jpeg_is_truncated(bytes) {
        // The JPEG decoder fills the missing part with gray without a word.
        return Err("cannot decode the image: the JPEG ends before its end-of-image marker, so the file is \
                    truncated (cut off in a download or a copy)"
            .into());
    }
    let what = |e: ImageError, size: Option<(u32, u32)>| match (e, size) {
        (ImageError::Limits(_), Some((w, h))) => {
            format!("cannot decode the image: it is {w}×{h} pixels, more than the decoder's 512 MiB; shrink it")
        }
        (ImageError::Limits(_), None) => {
            "cannot decode the image: it needs more than the decoder's 512 MiB; shrink it".into()
        }
        (ImageError::Unsupported(e), _) => format!("{}: {e}", unsupported()),
        // The decoders' own messages can hold their internal structures (`ChunkType { .. }`):
        // say what matters instead.
        (ImageError::Decoding(_), _) => {
            let kind = if format == Some(ImageFormat::Png) { "PNG" } else { "JPEG" };
            format!("cannot decode the image: its {kind} data is damaged (not a whole, valid {kind} file)")
        }
        (e, _) => format!("cannot decode the image ({e}): the file is damaged"),
    };
    let mut decoder = reader.into_decoder().map_err(|e| what(e, None))?;
    let size = decoder.dimensions();
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| what(e, Some(size)))?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// An image file's upright size (its EXIF orientation applied) and whether it has colour, read
/// from its header only.
pub fn image_header(path: &Path) -> Result<(usize, usize, bool)> {
    use image::metadata::Orientation::{Rotate270, Rotate270FlipH, Rotate90, Rotate90FlipH};
    use image::ImageDecoder;
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| Error::file(path, format!("cannot read the image: {e}")))?;
    let mut d = reader.into_decoder().map_err(|e| {
        Error::file(path, format!("cannot decode the image ({e}); replace the file (or leave it out of the data)"))
    })?;
    let (w, h) = d.dimensions();
    let turned = matches!(d.orientation(), Ok(Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH));
    let color = d.color_type().has_color();
    let (w, h) = if turned { (h, w) } else { (w, h) };
    Ok((w as usize, h as usize, color))
}

/// Whether a JPEG stream stops before its end-of-image marker. Walks the segments (each with its
/// length) and the entropy-coded data after each start of scan (up to the next marker that is
/// neither a stuffed 0xFF nor a restart), so markers inside thumbnails or data do not count.
/// Not a JPEG at all is left to the decoder.
fn jpeg_is_truncated(b: &[u8]) -> bool {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let mut i = 2;
    loop {
        // The next marker: 0xFF (any number of them: fill bytes), then its code.
        while i < b.len() && b[i] != 0xFF {
            i += 1;
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&code) = b.get(i) else { return true };
        i += 1;
        match code {
            0xD9 => return false,
            0xD0..=0xD8 | 0x01 => continue,
            _ => {}
        }
        let Some(len) = b.get(i..i + 2).map(|l| u16::from_be_bytes([l[0], l[1]]) as usize) else { return true };
        i += len;
        if i > b.len() {
            return true;
        }
        if code == 0xDA {
            loop {
                while i < b.len() && b[i] != 0xFF {
                    i += 1;
                }
                let Some(&next) = b.get(i + 1) else { return true };
                match next {
                    0x00 | 0xD0..=0xD7 => i += 2,
                    0xFF => i += 1,
                    _ => break,
                }
            }
        }
    }
}

/// Converts to the spec's channels, then resizes keeping the aspect ratio and pads to the size,
/// centred. An image that already has the size is not resampled.
pub fn fit(img: &DynamicImage, spec: &ImageSpec) -> Vec<u8> {
    if spec.channels == 1 {
        fit_buffer(&to_gray(img), spec)
    } else {
        fit_buffer(&img.to_rgb8(), spec)
    }
}

/// Fits a raw HWC `u8` image of `w` × `h` with `spec.channels` channels (IDX images).
pub fn fit_raw(pixels: &[u8], w: usize, h: usize, spec: &ImageSpec) -> Vec<u8> {
    if w == spec.width && h == spec.height {
        return pixels.to_vec();
    }
    if spec.channels == 1 {
        let img = GrayImage::from_raw(w as u32, h as u32, pixels.to_vec()).expect("gray buffer has w*h bytes");
        fit_buffer(&img, spec)
    } else {
        let img = RgbImage::from_raw(w as u32, h as u32, pixels.to_vec()).expect("rgb buffer has w*h*3 bytes");
        fit_buffer(&img, spec)
    }
}

/// Gray as PIL's `convert("L")` computes it (ITU-R 601-2 luma), which torchvision uses.
fn to_gray(img: &DynamicImage) -> GrayImage {
    match img {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_) => img.to_luma8(),
        _ => {
            let rgb = img.to_rgb8();
            GrayImage::from_fn(rgb.width(), rgb.height(), |x, y| {
                let [r, g, b] = rgb.get_pixel(x, y).0;
                let l = (r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16;
                image::Luma([l as u8])
            })
        }
    }
}

fn fit_buffer<P: Pixel<Subpixel = u8> + 'static>(img: &ImageBuffer<P, Vec<u8>>, spec: &ImageSpec) -> Vec<u8> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if (w, h) == (spec.width, spec.height) {
        return img.as_raw().clone();
    }
    let (nw, nh) = scaled_size(w, h, spec);
    let resized = if (nw, nh) == (w, h) {
        img.clone()
    } else {
        image::imageops::resize(img, nw as u32, nh as u32, FilterType::Triangle)
    };
    let c = spec.channels;
    let mut out = vec![spec.fill; spec.len()];
    let (ox, oy) = ((spec.width - nw) / 2, (spec.height - nh) / 2);
    for y in 0..nh {
        let dst = ((oy + y) * spec.width + ox) * c;
        out[dst..dst + nw * c].copy_from_slice(&resized.as_raw()[y * nw * c..(y + 1) * nw * c]);
    }
    out
}

/// The size a `w` × `h` image is scaled to before padding: the largest that fits, same aspect.
fn scaled_size(w: usize, h: usize, spec: &ImageSpec) -> (usize, usize) {
    let scale = (spec.width as f64 / w as f64).min(spec.height as f64 / h as f64);
    let nw = ((w as f64 * scale).round() as usize).clamp(1, spec.width);
    let nh = ((h as f64 * scale).round() as usize).clamp(1, spec.height);
    (nw, nh)
}

/// Refuses to decode `count` images at the size of `spec` when they would not fit in the host's
/// memory (the dataset is kept decoded), instead of aborting on the allocation.
pub fn check_fits_in_memory(count: usize, spec: &ImageSpec) -> Result<()> {
    let need = count as f64 * spec.width as f64 * spec.height as f64 * spec.channels as f64;
    let available = crate::gpu::host_available().map_or(f64::MAX, |b| b as f64);
    if need > available.min(isize::MAX as f64) {
        let gib = |b: f64| b / (1u64 << 30) as f64;
        return Err(Error::Invalid(format!(
            "{count} images of {}×{}×{} need {:.1} GiB of host memory once decoded, and {:.1} GiB are available; \
             give a smaller {}",
            spec.width,
            spec.height,
            spec.channels,
            gib(need),
            gib(available),
            crate::setting::Setting::ImageSize
        )));
    }
    Ok(())
}

/// Loads many images into one HWC buffer, on all cores, with what fitting did to them. On
/// failure, the error of the first bad file in list order, so the message does not depend on
/// thread timing.
pub fn load_images(paths: &[std::path::PathBuf], spec: &ImageSpec) -> Result<(Vec<u8>, FitCounts)> {
    check_fits_in_memory(paths.len(), spec)?;
    let n = spec.len();
    let mut pixels = vec![0u8; paths.len() * n];
    if paths.is_empty() {
        return Ok((pixels, FitCounts::default()));
    }
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(paths.len());
    let per = paths.len().div_ceil(threads);
    let results: Vec<Result<FitCounts>> = std::thread::scope(|s| {
        let handles: Vec<_> = pixels
            .chunks_mut(per * n)
            .zip(paths.chunks(per))
            .map(|(out, files)| {
                s.spawn(move || {
                    let mut counts = FitCounts::default();
                    for (dst, path) in out.chunks_mut(n).zip(files) {
                        let (px, c) = load_fitted(path, spec)?;
                        dst.copy_from_slice(&px);
                        counts.add(c);
                    }
                    Ok(counts)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::Invalid("an image decoder thread panicked".into()))))
            .collect()
    });
    let mut counts = FitCounts::default();
    for c in results {
        counts.add(c?);
    }
    Ok((pixels, counts))
}
