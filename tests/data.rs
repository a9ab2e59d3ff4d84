//! Tests of the data layer: CSV and IDX sources, errors, split, preprocessing, loader.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tailor::data::image::{fit, fit_raw, image_header, load_image, to_chw, Placement};
use tailor::data::table::parse_table;
use tailor::data::*;

fn shared() -> PathBuf {
    std::env::var_os("TAILOR_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

/// A fresh temporary folder for one test.
fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tailor-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    ::image::RgbImage::from_pixel(w, h, ::image::Rgb(rgb)).save(path).unwrap();
}

/// A CSV and one 4×4 PNG per row (`file` is the first column).
fn csv_set(name: &str, csv: &str) -> PathBuf {
    let d = tmp(name);
    std::fs::write(d.join("labels.csv"), csv).unwrap();
    for line in csv.lines().skip(1) {
        let f = line.split(',').next().unwrap().trim_matches('"');
        if !f.is_empty() {
            png(&d.join(f), 4, 4, [10, 20, 30]);
        }
    }
    d
}

fn rgb4() -> ImageSpec {
    ImageSpec::new(4, 4, 3).unwrap()
}

fn err<T: std::fmt::Debug>(r: tailor::Result<T>) -> String {
    r.unwrap_err().to_string()
}

// ---- CSV ----

#[test]
fn csv_quoted_fields_and_lines() {
    let t = parse_table(
        Path::new("x.csv"),
        "\u{feff}file,label\r\n\"a,b.png\",\"say \"\"hi\"\"\"\r\nc.png,\"two\nlines\"\nd.png,plain\n",
        b',',
    )
    .unwrap();
    assert_eq!(t.header, ["file", "label"]);
    assert_eq!(t.records[0], ["a,b.png", "say \"hi\""]);
    assert_eq!(t.records[1], ["c.png", "two\nlines"]);
    assert_eq!(t.lines, [2, 3, 5]);
    let e = err(parse_table(Path::new("x.csv"), "file,label\na.png,x,y\n", b','));
    assert!(e.contains("x.csv") && e.contains("line 2") && e.contains("3 fields"), "{e}");
    let e = err(parse_table(Path::new("x.csv"), "file,label\n\"a.png,x\n", b','));
    assert!(e.contains("line 2") && e.contains("never closed"), "{e}");
    let e = err(parse_table(Path::new("empty.csv"), "", b','));
    assert!(e.contains("empty.csv") && e.contains("empty"), "{e}");
    let e = err(parse_table(Path::new("h.csv"), "file,label\n", b','));
    assert!(e.contains("no data lines"), "{e}");
}

#[test]
fn csv_lines_count_blank_lines_and_crlf() {
    // Blank lines are skipped but counted, with CRLF or LF ends.
    let t = parse_table(Path::new("x.csv"), "file,label\r\n\r\na.png,x\r\n\r\n\r\nb.png,\"y\r\nz\"\r\nc.png,w", b',')
        .unwrap();
    assert_eq!(t.records, [["a.png", "x"], ["b.png", "y\r\nz"], ["c.png", "w"]]);
    assert_eq!(t.lines, [3, 6, 8]);
    let e = err(parse_table(Path::new("x.csv"), "file,label\n\na.png,x\n\nb.png\n", b','));
    assert!(e.contains("line 5 has 1 fields"), "{e}");
    // A quote inside an unquoted field is text; one opened and never closed is named by its line.
    let t = parse_table(Path::new("x.csv"), "file,label\na.png,5\"\nb.png,\"q\"\"\"\n", b',').unwrap();
    assert_eq!(t.records, [["a.png", "5\""], ["b.png", "q\""]]);
    let e = err(parse_table(Path::new("x.csv"), "file,label\na.png,x\n\nb.png,\"y\"\"\nc.png,z\n", b','));
    assert!(e.contains("line 4") && e.contains("never closed"), "{e}");
    // Another delimiter, and the header's cells trimmed.
    let t = parse_table(Path::new("x.tsv"), " file \tlabel\na,b.png\tx\n", b'\t').unwrap();
    assert_eq!(t.header, ["file", "label"]);
    assert_eq!(t.records, [["a,b.png", "x"]]);
}

#[test]
fn a_label_of_two_columns_joins_their_values() {
    let d = csv_set(
        "two-columns",
        "file,type,colour\na.png,Tshirts,Blue\nb.png,Tshirts,Red\nc.png,Tshirts,Blue\nd.png,Shoes,\n",
    );
    let ds = load_csv(&CsvSpec::new(d.join("labels.csv"), LabelSource::Column("type+colour".into())), &rgb4()).unwrap();
    assert_eq!(ds.label_names, ["Tshirts+Blue", "Tshirts+Red"]);
    assert_eq!(ds.targets, Targets::Single(vec![0, 1, 0]));
    assert!(ds.warnings.join("").contains("skipped 1 row(s) with a missing 'type+colour'"), "{:?}", ds.warnings);
    // A column whose own name holds '+' is that column; a part that is no column is named.
    let d = csv_set("plus-column", "file,a+b\na.png,x\n");
    let ds = load_csv(&CsvSpec::new(d.join("labels.csv"), LabelSource::Column("a+b".into())), &rgb4()).unwrap();
    assert_eq!(ds.label_names, ["x"]);
    let e = err(load_csv(&CsvSpec::new(d.join("labels.csv"), LabelSource::Column("a+c".into())), &rgb4()));
    assert!(e.contains("'a+c'"), "{e}");
}

#[test]
fn csv_missing_column_names_it_and_lists_columns() {
    // Messages name settings as the command line's flags, as `tailor` prints them.
    tailor::setting::name_settings_as(tailor::setting::Naming::Flags);
    let d = csv_set("missing-col", "file,colour\na.png,red\n");
    let e = err(load_csv(&CsvSpec::new(d.join("labels.csv"), LabelSource::Column("shape".into())), &rgb4()));
    assert!(e.contains("'shape'") && e.contains("file, colour"), "{e}");
    let mut spec = CsvSpec::new(d.join("labels.csv"), LabelSource::Column("colour".into()));
    spec.image_column = "path".into();
    let e = err(load_csv(&spec, &rgb4()));
    assert!(e.contains("'path'") && e.contains("--image-column"), "{e}");
}

#[test]
fn csv_single_label_skips_missing_values() {
    let d = csv_set("single", "file,colour\na.png,red\nb.png,NA\nc.png,\"blue\"\nd.png,\ne.png,red\n");
    let ds = load_csv(&CsvSpec::new(d.join("labels.csv"), LabelSource::Column("colour".into())), &rgb4()).unwrap();
    assert_eq!(ds.label_names, ["blue", "red"]);
    assert_eq!(ds.targets, Targets::Single(vec![1, 0, 1]));
    assert_eq!(ds.pixels.len(), 3 * 4 * 4 * 3);
    assert_eq!(&ds.image(0)[..3], &[10, 20, 30]);
    assert!(ds.warnings[0].contains("skipped 2 row") && ds.warnings[0].contains("line 3, 5"), "{:?}", ds.warnings);
    assert!(ds.describe(1).ends_with("line 4"));
}

#[test]
fn csv_multi_columns_ignore_na_and_empty() {
    let d = csv_set("multi", "file,colour,season,year\na.png,Blue,Fall,2011\nb.png,NA,,2012\nc.png,Red,Fall,2011\n");
    let spec = CsvSpec::new(d.join("labels.csv"), LabelSource::Columns(vec!["colour".into(), "season".into()]));
    let ds = load_csv(&spec, &rgb4()).unwrap();
    assert_eq!(ds.kind(), LabelKind::Multi);
    assert_eq!(ds.label_names, ["colour=Blue", "colour=Red", "season=Fall"]);
    assert_eq!(ds.targets, Targets::Multi(vec![vec![0, 2], vec![], vec![1, 2]]));
    // The dropped cells are not silent: one warning per column, with the count and the lines.
    assert_eq!(ds.warnings.len(), 2, "{:?}", ds.warnings);
    assert!(ds.warnings[0].contains("1 of 3 row(s) have no 'colour' value") && ds.warnings[0].contains("line 3"));
    assert!(ds.warnings[1].contains("1 of 3 row(s) have no 'season' value"), "{:?}", ds.warnings);
    let sum = spec.table().unwrap().summary(&tailor::data::table::default_missing(), 2);
    assert_eq!(
        sum[1],
        ColumnSummary {
            name: "colour".into(),
            distinct: 2,
            missing: 1,
            top: vec![("Blue".into(), 1), ("Red".into(), 1)]
        }
    );
    assert_eq!((sum[2].distinct, sum[2].missing), (1, 1));
    assert_eq!(sum[3].top[0], ("2011".into(), 2));
}

#[test]
fn csv_tags_column() {
    let d = csv_set("tags", "file,tags\na.png,\"cat| dog\"\nb.png,\nc.png,dog|dog|NA\n");
    let spec = CsvSpec::new(d.join("labels.csv"), LabelSource::Tags { column: "tags".into(), sep: "|".into() });
    let ds = load_csv(&spec, &rgb4()).unwrap();
    assert_eq!(ds.label_names, ["cat", "dog"]);
    assert_eq!(ds.targets, Targets::Multi(vec![vec![0, 1], vec![], vec![1]]));
    let w = ds.warnings.join("\n");
    assert!(w.contains("1 of 3 row(s) have no 'tags' value") && w.contains("line 3"), "{w}");
    assert!(w.contains("dropped 1 missing tag(s)") && w.contains("line 4"), "{w}");
}

#[test]
fn csv_tags_with_another_separator_get_a_hint() {
    // Messages name settings as the command line's flags, as `tailor` prints them.
    tailor::setting::name_settings_as(tailor::setting::Naming::Flags);
    let d = csv_set("tag-sep", "file,tags\na.png,Men;Fall\nb.png,Women\n");
    let spec = CsvSpec::new(d.join("labels.csv"), LabelSource::Tags { column: "tags".into(), sep: "|".into() });
    let ds = load_csv(&spec, &rgb4()).unwrap();
    let w = ds.warnings.join("\n");
    assert!(w.contains("such as 'Men;Fall' hold ';'") && w.contains("--tag-sep ';'"), "{w}");
    // The right separator: no hint.
    let spec = CsvSpec::new(d.join("labels.csv"), LabelSource::Tags { column: "tags".into(), sep: ";".into() });
    assert!(!load_csv(&spec, &rgb4()).unwrap().warnings.join("\n").contains("--tag-sep"));
}

#[test]
fn csv_image_errors_name_the_file() {
    let d = csv_set("img-err", "file,label\na.png,x\n");
    std::fs::write(d.join("labels.csv"), "file,label\na.png,x\ngone.png,y\n").unwrap();
    let spec = CsvSpec::new(d.join("labels.csv"), LabelSource::Column("label".into()));
    let e = err(load_csv(&spec, &rgb4()));
    assert!(e.contains("gone.png") && e.contains("line 3") && e.contains("missing"), "{e}");
    std::fs::write(d.join("gone.png"), b"this is not a png").unwrap();
    let e = err(load_csv(&spec, &rgb4()));
    assert!(e.contains("gone.png") && e.contains("cannot decode"), "{e}");
    std::fs::write(d.join("gone.png"), b"").unwrap();
    let e = err(load_csv(&spec, &rgb4()));
    assert!(e.contains("gone.png") && e.contains("empty"), "{e}");
    std::fs::write(d.join("labels.csv"), "").unwrap();
    let e = err(load_csv(&spec, &rgb4()));
    assert!(e.contains("labels.csv") && e.contains("empty"), "{e}");
}

/// A JPEG of `img` (quality 100), with an EXIF block giving `orientation` when it is not 1.
fn jpeg(img: &::image::RgbImage, orientation: u16) -> Vec<u8> {
    use ::image::ImageEncoder;
    let mut out = Vec::new();
    let mut enc = ::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 100);
    if orientation != 1 {
        // TIFF header (little-endian, IFD at 8), one entry: Orientation (0x0112), SHORT, 1 value.
        let mut exif = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0".to_vec();
        exif.extend(orientation.to_le_bytes());
        // The value's padding, no next IFD, and bytes that look like an end-of-image marker
        // inside the segment (as a thumbnail's would).
        exif.extend([0, 0, 0, 0, 0, 0, 0xFF, 0xD9]);
        enc.set_exif_metadata(exif).unwrap();
    }
    enc.write_image(img.as_raw(), img.width(), img.height(), ::image::ExtendedColorType::Rgb8).unwrap();
    out
}

#[test]
fn photos_are_read_upright_and_truncated_jpegs_refused() {
    let d = tmp("jpeg");
    // 32 wide, 16 high: red left half, blue right half.
    let img =
        ::image::RgbImage::from_fn(
            32,
            16,
            |x, _| if x < 16 { ::image::Rgb([250, 0, 0]) } else { ::image::Rgb([0, 0, 250]) },
        );
    let spec = |w, h| ImageSpec::new(w, h, 3).unwrap();
    // Orientation 6: shown turned 90° clockwise, so 16 wide and 32 high, red on top.
    std::fs::write(d.join("turned.jpg"), jpeg(&img, 6)).unwrap();
    assert_eq!(image_header(&d.join("turned.jpg")).unwrap(), (16, 32, true));
    let px = load_image(&d.join("turned.jpg"), &spec(16, 32)).unwrap();
    let at = |x: usize, y: usize| &px[(y * 16 + x) * 3..(y * 16 + x) * 3 + 3];
    assert!(at(8, 4)[0] > 200 && at(8, 4)[2] < 50, "top {:?}", at(8, 4));
    assert!(at(8, 28)[2] > 200 && at(8, 28)[0] < 50, "bottom {:?}", at(8, 28));
    // Orientation 1 (no EXIF) is as stored.
    let plain = jpeg(&img, 1);
    std::fs::write(d.join("plain.jpg"), &plain).unwrap();
    assert_eq!(image_header(&d.join("plain.jpg")).unwrap(), (32, 16, true));
    // Bytes after the end-of-image marker do not matter; a JPEG cut short is an error naming it.
    let mut trailing = plain.clone();
    trailing.extend(b"trailing bytes");
    std::fs::write(d.join("trailing.jpg"), &trailing).unwrap();
    load_image(&d.join("trailing.jpg"), &spec(32, 16)).unwrap();
    for cut in [plain.len() - 2, plain.len() / 2, 200] {
        std::fs::write(d.join("cut.jpg"), &plain[..cut]).unwrap();
        let e = err(load_image(&d.join("cut.jpg"), &spec(32, 16)));
        assert!(e.contains("cut.jpg") && e.contains("truncated"), "{cut}: {e}");
    }
    let turned = jpeg(&img, 6);
    std::fs::write(d.join("cut.jpg"), &turned[..turned.len() - 100]).unwrap();
    assert!(err(load_image(&d.join("cut.jpg"), &spec(16, 32))).contains("truncated"));
    // Other formats are named.
    std::fs::write(d.join("x.png"), b"BM\0\0\0\0\0\0\0\0\0\0\0\0").unwrap();
    let e = err(load_image(&d.join("x.png"), &spec(32, 16)));
    assert!(e.contains("x.png") && e.contains("Bmp") && e.contains("PNG and JPEG"), "{e}");
}

#[test]
fn csv_duplicates_case_twins_windows_paths_and_other_separators() {
    // Messages name settings as the command line's flags, as `tailor` prints them.
    tailor::setting::name_settings_as(tailor::setting::Naming::Flags);
    let d = csv_set("dups", "file,label\na.png,x\n");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    png(&d.join("sub/w.png"), 4, 4, [1, 2, 3]);
    std::fs::write(d.join("labels.csv"), "file,label\na.png,Apparel\nsub\\w.png,apparel\na.png,Apparel\n").unwrap();
    let spec = CsvSpec::new(d.join("labels.csv"), LabelSource::Column("label".into()));
    let ds = load_csv(&spec, &rgb4()).unwrap();
    assert_eq!(ds.len(), 3, "the Windows path is found");
    let w = ds.warnings.join("\n");
    assert!(
        w.contains("1 row(s) name an image") && w.contains("lines 2 and 4") && w.contains("--split-by file"),
        "{w}"
    );
    assert!(w.contains("'Apparel' and 'apparel' differ only in case"), "{w}");
    std::fs::write(d.join("labels.csv"), "file;label\na.png;x\n").unwrap();
    let e = err(load_csv(&spec, &rgb4()));
    assert!(e.contains("separated by semicolons"), "{e}");
}

#[test]
fn csv_images_subfolder_found() {
    let d = tmp("subfolder");
    std::fs::create_dir(d.join("images")).unwrap();
    std::fs::write(d.join("labels.csv"), "file,label\na.png,x\n").unwrap();
    png(&d.join("images/a.png"), 8, 4, [255, 0, 0]);
    let ds = load_csv(&CsvSpec::new(d.join("labels.csv"), LabelSource::Column("label".into())), &rgb4()).unwrap();
    assert_eq!(ds.len(), 1);
    // 8×4 fitted into 4×4: rows 0 and 3 are padding, rows 1 and 2 the (red) image.
    assert_eq!(&ds.image(0)[..3], &[0, 0, 0]);
    assert_eq!(&ds.image(0)[4 * 3..4 * 3 + 3], &[255, 0, 0]);
}

#[test]
fn fitting_is_counted_for_one_note() {
    let d = tmp("fit-note");
    std::fs::write(d.join("labels.csv"), "file,label\na.png,x\nwide.png,y\nbig.png,x\ngray.png,y\n").unwrap();
    png(&d.join("a.png"), 4, 4, [1, 2, 3]);
    png(&d.join("wide.png"), 8, 4, [1, 2, 3]);
    png(&d.join("big.png"), 8, 8, [1, 2, 3]);
    ::image::GrayImage::from_pixel(4, 4, ::image::Luma([9])).save(d.join("gray.png")).unwrap();
    let spec = CsvSpec::new(d.join("labels.csv"), LabelSource::Column("label".into()));
    let ds = load_csv(&spec, &rgb4()).unwrap();
    assert_eq!(ds.notes.len(), 1, "{:?}", ds.notes);
    let n = &ds.notes[0];
    assert!(n.contains("input is 4×4 RGB: 2 of 4 image(s) were resized to that size (1 of them letterboxed"), "{n}");
    assert!(n.contains("1 of 4 were converted to RGB"), "{n}");
    // Images that already are the input need no note.
    std::fs::write(d.join("labels.csv"), "file,label\na.png,x\n").unwrap();
    assert!(load_csv(&spec, &rgb4()).unwrap().notes.is_empty());
    assert!(load_csv(&spec, &ImageSpec::new(4, 4, 1).unwrap()).unwrap().notes[0].contains("converted to gray"));

    let d = tmp("fit-note-idx");
    std::fs::write(d.join("train-images-idx3-ubyte"), idx_bytes(&[3, 2, 2], &[0; 12])).unwrap();
    std::fs::write(d.join("train-labels-idx1-ubyte"), idx_bytes(&[3], &[0, 1, 0])).unwrap();
    let load = |spec: ImageSpec| load_idx(&IdxSpec::new(&d, "train"), &spec).unwrap().notes;
    assert!(load(ImageSpec::new(2, 2, 1).unwrap()).is_empty());
    let n = load(ImageSpec::new(4, 2, 3).unwrap());
    assert!(
        n[0].contains("input is 4×2 RGB: 3 of 3 image(s) were resized to that size (3 of them letterboxed"),
        "{n:?}"
    );
    assert!(n[0].contains("3 of 3 were converted to RGB"), "{n:?}");
}

#[test]
fn fashion_product_subset() {
    let dir = shared().join("data/fashion-product-small");
    let full = std::fs::read_to_string(dir.join("labels.csv")).unwrap();
    let d = tmp("fps");
    let mut head: Vec<&str> = full.lines().take(41).collect();
    head.extend(full.lines().filter(|l| l.contains(",NA")).take(3));
    std::fs::write(d.join("labels.csv"), head.join("\n")).unwrap();
    let cols = ["gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "usage"];
    let mut spec =
        CsvSpec::new(d.join("labels.csv"), LabelSource::Columns(cols.iter().map(|c| c.to_string()).collect()));
    spec.image_dir = Some(dir.join("images"));
    let ds = load_csv(&spec, &ImageSpec::new(48, 64, 3).unwrap()).unwrap();
    assert_eq!(ds.len(), 43);
    assert!(ds.label_names.iter().all(|l| !l.ends_with("=NA") && !l.ends_with('=')));
    // Every row has one label per attribute column, less its NA cells.
    assert!(ds.targets.labels(0).len() == 7 && (40..43).all(|i| ds.targets.labels(i).len() == 6));
    let png = ::image::open(dir.join("images/10000.png")).unwrap().to_rgb8();
    assert_eq!(ds.image(0), png.as_raw().as_slice(), "an image that has the size is untouched");

    let sum = CsvSpec::new(dir.join("labels.csv"), LabelSource::Column("usage".into()))
        .table()
        .unwrap()
        .summary(&table::default_missing(), 3);
    let get = |n: &str| sum.iter().find(|s| s.name == n).unwrap().clone();
    assert_eq!((get("gender").distinct, get("baseColour").distinct, get("baseColour").missing), (5, 43, 3));
    assert_eq!((get("usage").distinct, get("usage").missing, get("file").distinct), (6, 8, 9583));
}

// ---- IDX ----

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    dims.iter().for_each(|d| b.extend(d.to_be_bytes()));
    b.extend_from_slice(data);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_small_files_raw_and_gz() {
    let d = tmp("idx");
    let pixels: Vec<u8> = (0..3 * 2 * 2).map(|v| v as u8 * 20).collect();
    std::fs::write(d.join("train-images-idx3-ubyte"), idx_bytes(&[3, 2, 2], &pixels)).unwrap();
    std::fs::write(d.join("train-labels-idx1-ubyte.gz"), gz(&idx_bytes(&[3], &[2, 0, 1]))).unwrap();
    let ds = load_idx(&IdxSpec::new(&d, "train"), &ImageSpec::new(2, 2, 1).unwrap()).unwrap();
    assert_eq!(ds.pixels, pixels);
    assert_eq!(ds.targets, Targets::Single(vec![2, 0, 1]));
    assert_eq!(ds.label_names[..3], ["0", "1", "2"]);
    let rgb = load_idx(&IdxSpec::new(&d, "train"), &ImageSpec::new(2, 2, 3).unwrap()).unwrap();
    assert_eq!(&rgb.image(0)[..6], &[0, 0, 0, 20, 20, 20]);
    let e = err(load_idx(&IdxSpec::new(&d, "t10k"), &ImageSpec::new(2, 2, 1).unwrap()));
    assert!(e.contains("t10k-images-idx3-ubyte"), "{e}");
}

#[test]
fn idx_bad_files_are_errors() {
    let d = tmp("idx-bad");
    let p = d.join("x-idx3-ubyte");
    std::fs::write(&p, &idx_bytes(&[3, 2, 2], &[0; 12])[..20]).unwrap();
    let e = err(read_idx(&p));
    assert!(e.contains("x-idx3-ubyte") && e.contains("truncated") && e.contains("12 data bytes"), "{e}");
    std::fs::write(&p, &idx_bytes(&[3, 2, 2], &[0; 12])[..10]).unwrap();
    assert!(err(read_idx(&p)).contains("truncated IDX header"));
    std::fs::write(&p, b"\x89PNG\r\n\x1a\n").unwrap();
    assert!(err(read_idx(&p)).contains("not an IDX file"));
    std::fs::write(&p, b"").unwrap();
    assert!(err(read_idx(&p)).contains("empty"));
    let z = gz(&idx_bytes(&[3, 2, 2], &[0; 12]));
    std::fs::write(&p, &z[..z.len() - 6]).unwrap();
    let e = err(read_idx(&p));
    assert!(e.contains("gzip") || e.contains("truncated"), "{e}");
    std::fs::write(d.join("train-images-idx3-ubyte"), idx_bytes(&[3, 2, 2], &[0; 12])).unwrap();
    std::fs::write(d.join("train-labels-idx1-ubyte"), idx_bytes(&[2], &[0, 1])).unwrap();
    let e = err(load_idx(&IdxSpec::new(&d, "train"), &ImageSpec::new(2, 2, 1).unwrap()));
    assert!(e.contains("2 labels for 3 images"), "{e}");
}

#[test]
fn idx_labels_with_gaps_above_nine_are_a_corrupt_file() {
    let d = tmp("idx-sparse");
    let write = |labels: &[u8]| {
        let n = labels.len() as u32;
        std::fs::write(d.join("train-images-idx3-ubyte"), idx_bytes(&[n, 2, 2], &vec![0; labels.len() * 4])).unwrap();
        std::fs::write(d.join("train-labels-idx1-ubyte"), idx_bytes(&[n], labels)).unwrap();
    };
    let load = || load_idx(&IdxSpec::new(&d, "train"), &ImageSpec::new(2, 2, 1).unwrap());
    // One stray byte among 0..9 would make 201 classes, 190 of them without samples.
    let mut labels: Vec<u8> = (0..30).map(|i| i % 10).collect();
    labels[7] = 200;
    write(&labels);
    let e = err(load());
    assert!(e.contains("train-labels-idx1-ubyte") && e.contains("up to 200"), "{e}");
    assert!(e.contains("only 11 distinct values occur (0-9, 200)") && e.contains("190 of the 201"), "{e}");
    assert!(e.contains("label 200 (in 1 image(s), the first is image 7)") && e.contains("corrupt"), "{e}");
    // Labels that leave out some of 0..9 (a subset of the digits) or start at 1 still load; the
    // split then names the empty class.
    write(&(1..=12).chain(1..=12).collect::<Vec<u8>>());
    assert_eq!(load().unwrap().label_names.len(), 13);
    // As many classes as the largest id needs (not always ten: digits 0..2 are three classes).
    write(&[0, 1, 2, 5, 0, 1, 2, 5]);
    assert_eq!(load().unwrap().label_names.len(), 6);
    write(&[0, 1, 2, 0, 1, 2]);
    assert_eq!(load().unwrap().label_names.len(), 3);
}

#[test]
fn fashion_mnist_test_set() {
    let dir = shared().join("data/fashion-mnist");
    let ds = load_idx(&IdxSpec::new(&dir, "t10k"), &ImageSpec::new(28, 28, 1).unwrap()).unwrap();
    assert_eq!(ds.len(), 10000);
    assert_eq!(ds.label_names[9], "Ankle boot");
    assert_eq!(&ds.label_counts(&(0..ds.len()).collect::<Vec<_>>()), &[1000; 10]);
    let Targets::Single(t) = &ds.targets else { panic!() };
    assert_eq!(t[..10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    let first = ds.image(0);
    assert_eq!(first.iter().map(|&v| v as u32).sum::<u32>(), 33456);
    assert_eq!(first[14 * 28 + 12..14 * 28 + 16], [0x62, 0x88, 0x6e, 0x6d]);
}

// ---- split ----

fn synthetic(counts: &[usize]) -> Dataset {
    let labels: Vec<u32> = counts.iter().enumerate().flat_map(|(c, &n)| std::iter::repeat_n(c as u32, n)).collect();
    Dataset {
        width: 2,
        height: 1,
        channels: 1,
        pixels: (0..labels.len() * 2).map(|i| (i / 2) as u8).collect(),
        label_names: (0..counts.len()).map(|c| format!("c{c}")).collect(),
        targets: Targets::Single(labels),
        table: None,
        records: vec![],
        warnings: vec![],
        notes: vec![],
    }
}

#[test]
fn split_is_deterministic_and_stratified() {
    let run = |seed| {
        let mut ds = synthetic(&[50, 30, 20]);
        let s = split(&mut ds, &SplitSpec { seed, ..Default::default() }).unwrap();
        (s, ds.pixels)
    };
    let (a, pa) = run(1);
    assert_eq!((a.clone(), pa), run(1));
    assert_ne!(a.val, run(2).0.val);
    assert_eq!(a.val_counts, [5, 3, 2]);
    assert_eq!(a.train_counts, [45, 27, 18]);
    assert_eq!(a.train.len() + a.val.len(), 100);
}

#[test]
fn split_by_keeps_groups_together() {
    let d = tmp("groups");
    let mut csv = String::from("file,label,product\n");
    for i in 0..60 {
        csv += &format!("{i}.png,{},p{}\n", i % 3, i / 4);
    }
    std::fs::write(d.join("labels.csv"), &csv).unwrap();
    for i in 0..60 {
        png(&d.join(format!("{i}.png")), 2, 2, [i as u8, 0, 0]);
    }
    let spec = CsvSpec::new(d.join("labels.csv"), LabelSource::Column("label".into()));
    let load = || load_csv(&spec, &ImageSpec::new(2, 2, 3).unwrap()).unwrap();
    let mut ds = load();
    let s = split(
        &mut ds,
        &SplitSpec { split_by: Some("product".into()), val_fraction: 0.25, seed: 3, ..Default::default() },
    )
    .unwrap();
    let group = |i: usize| ds.image(i)[0] / 4;
    let val_groups: std::collections::HashSet<u8> = s.val.iter().map(|&i| group(i)).collect();
    assert!(s.train.iter().all(|&i| !val_groups.contains(&group(i))));
    assert_eq!(s.val.len(), 16, "whole groups of 4 until 15 are reached");
    assert!(s.notes.is_empty(), "16 of 60 is close enough to 0.25: {:?}", s.notes);
    let e = err(split(&mut load(), &SplitSpec { split_by: Some("sku".into()), ..Default::default() }));
    assert!(e.contains("'sku'") && e.contains("file, label, product"), "{e}");
}

#[test]
fn split_by_does_not_let_one_large_group_swallow_validation() {
    let d = tmp("groups-big");
    let mut csv = String::from("file,label,product\n");
    for i in 0..120 {
        let group = if i < 60 { "big".to_string() } else { format!("p{}", i / 5) };
        csv += &format!("{i}.png,{},{group}\n", i % 2);
    }
    std::fs::write(d.join("labels.csv"), &csv).unwrap();
    (0..120).for_each(|i| png(&d.join(format!("{i}.png")), 2, 2, [0, 0, 0]));
    let spec = CsvSpec::new(d.join("labels.csv"), LabelSource::Column("label".into()));
    for seed in 0..8 {
        let mut ds = load_csv(&spec, &ImageSpec::new(2, 2, 3).unwrap()).unwrap();
        let spec = SplitSpec { split_by: Some("product".into()), val_fraction: 0.1, seed, ..Default::default() };
        let s = split(&mut ds, &spec).unwrap();
        // Target 12: two groups of 5, never the group of 60.
        assert_eq!(s.val.len(), 10, "seed {seed}");
    }
}

#[test]
fn split_by_says_when_whole_groups_miss_the_fraction() {
    // Messages name settings as the command line's flags, as `tailor` prints them.
    tailor::setting::name_settings_as(tailor::setting::Naming::Flags);
    let d = tmp("groups-miss");
    let mut csv = String::from("file,label,product\n");
    for i in 0..40 {
        csv += &format!("{i}.png,{},p{}\n", i % 2, i / 10);
    }
    std::fs::write(d.join("labels.csv"), &csv).unwrap();
    (0..40).for_each(|i| png(&d.join(format!("{i}.png")), 2, 2, [0, 0, 0]));
    let spec = CsvSpec::new(d.join("labels.csv"), LabelSource::Column("label".into()));
    let mut ds = load_csv(&spec, &ImageSpec::new(2, 2, 3).unwrap()).unwrap();
    // 4 groups of 10 and 0.1 asked for: one whole group, a quarter of the samples.
    let s = split(&mut ds, &SplitSpec { split_by: Some("product".into()), val_fraction: 0.1, ..Default::default() })
        .unwrap();
    assert_eq!(s.val.len(), 10);
    let n = s.notes.join("\n");
    assert!(n.contains("0.250 of the samples (10 of 40)") && n.contains("not the 0.1 --val-fraction"), "{n}");
    assert!(n.contains("--split-by product") && n.contains("4 groups"), "{n}");
}

#[test]
fn imbalance_follows_cui() {
    let mut ds = synthetic(&[100; 10]);
    let s = split(&mut ds, &SplitSpec { val_fraction: 0.0, imbalance: Some(10.0), ..Default::default() }).unwrap();
    let want: Vec<usize> = (0..10).map(|i| (100.0 * 10f64.powf(-(i as f64) / 9.0)).floor() as usize).collect();
    assert_eq!(s.train_counts, want);
    assert_eq!((want[0], want[9]), (100, 10));
    assert_eq!(ds.len(), want.iter().sum::<usize>(), "unused samples are freed");
}

#[test]
fn imbalance_reaches_its_ratio_on_data_that_is_already_long_tailed() {
    // Messages name settings as the command line's flags, as `tailor` prints them.
    tailor::setting::name_settings_as(tailor::setting::Naming::Flags);
    // Classes in no particular count order; the smallest has 2 samples.
    let mut ds = synthetic(&[20, 110, 2, 50, 9]);
    let s = split(&mut ds, &SplitSpec { val_fraction: 0.0, imbalance: Some(10.0), ..Default::default() }).unwrap();
    // Ranks by count: c1, c3, c0, c4, c2; n_max = 2 / 10^(-4/4) = 20.
    let frac = |r: f64| 10f64.powf(-r / 4.0);
    let want = [(20.0 * frac(2.0)) as usize, 20, 2, (20.0 * frac(1.0)) as usize, (20.0 * frac(3.0)) as usize];
    assert_eq!(s.train_counts, want);
    let (max, min) = (s.train_counts.iter().max().unwrap(), s.train_counts.iter().min().unwrap());
    assert_eq!((*max, *min), (20, 2), "n_max / n_min = ρ");
    let n = s.notes.join("\n");
    assert!(n.contains("--imbalance 10 kept 42 of the 191 training samples, 20 down to 2 per class"), "{n}");
}

#[test]
fn min_samples_drops_and_renumbers() {
    let mut ds = synthetic(&[40, 3, 30]);
    let s = split(&mut ds, &SplitSpec { min_samples: 5, ..Default::default() }).unwrap();
    assert_eq!(s.dropped, ["c1"]);
    assert_eq!(ds.label_names, ["c0", "c2"]);
    assert_eq!(s.train_counts, [36, 27]);
    assert_eq!(ds.len(), 70);
    // The c2 samples (pixel values 43..72) now carry label 1.
    assert!((0..ds.len()).all(|i| (ds.image(i)[0] >= 43) == (ds.targets.labels(i)[0] == 1)));
}

#[test]
fn split_errors() {
    let mut ds = synthetic(&[5, 0, 5]);
    let e = err(split(&mut ds, &SplitSpec::default()));
    assert!(e.contains("'c1'") && e.contains("no training samples"), "{e}");
    let e = err(split(&mut synthetic(&[1]), &SplitSpec::default()));
    assert!(e.contains("validation split is empty"), "{e}");
    let e = err(split(&mut synthetic(&[3, 3]), &SplitSpec { min_samples: 10, ..Default::default() }));
    assert!(e.contains("empty") || e.contains("no labels"), "{e}");
    assert!(err(split(&mut synthetic(&[3]), &SplitSpec { val_fraction: 1.0, ..Default::default() })).contains("[0, 1)"));
    assert!(err(split(&mut synthetic(&[3]), &SplitSpec { imbalance: Some(0.5), ..Default::default() }))
        .contains("at least 1"));
}

// ---- preprocessing ----

#[test]
fn resize_pad_keeps_aspect() {
    let spec = ImageSpec::new(4, 4, 3).unwrap();
    let img = ::image::DynamicImage::ImageRgb8(::image::RgbImage::from_pixel(8, 4, ::image::Rgb([200, 100, 50])));
    let out = fit(&img, &spec);
    for y in 0..4 {
        let want: &[u8] = if y == 0 || y == 3 { &[0, 0, 0] } else { &[200, 100, 50] };
        assert!((0..4).all(|x| &out[(y * 4 + x) * 3..(y * 4 + x) * 3 + 3] == want), "row {y}");
    }
    // Portrait 2×4 into 6×6: scaled to 3×6, columns 1..4.
    let gray = fit_raw(&[255; 8], 2, 4, &ImageSpec { fill: 7, ..ImageSpec::new(6, 6, 1).unwrap() });
    assert_eq!(&gray[..6], &[7, 255, 255, 255, 7, 7]);
    // Same size: untouched, and gray follows PIL's luma.
    let px = ::image::DynamicImage::ImageRgb8(::image::RgbImage::from_pixel(1, 1, ::image::Rgb([255, 0, 0])));
    assert_eq!(fit(&px, &ImageSpec::new(1, 1, 1).unwrap()), [76]);
    assert!(ImageSpec::new(4, 4, 2).is_err() && ImageSpec::new(0, 4, 3).is_err());
    assert_eq!((ImageSpec::parse_size("32").unwrap(), ImageSpec::parse_size("48x64").unwrap()), ((32, 32), (48, 64)));
    assert!(ImageSpec::parse_size("48x").is_err() && ImageSpec::parse_size("0").is_err());
}

#[test]
fn normalisation_matches_torchvision() {
    let spec = ImageSpec::new(1, 1, 3).unwrap();
    let norm = Normalize::default_for(3);
    let mut out = [0f32; 3];
    to_chw(&[255, 128, 0], &spec, &norm, Placement::default(), &mut out);
    let want = [(1.0 - 0.485) / 0.229, (128.0 / 255.0 - 0.456) / 0.224, (0.0 - 0.406) / 0.225];
    out.iter().zip(want).for_each(|(a, b)| assert!((a - b).abs() < 1e-6, "{a} vs {b}"));
    let mut g = [0f32; 1];
    to_chw(&[255], &ImageSpec::new(1, 1, 1).unwrap(), &Normalize::default_for(1), Placement::default(), &mut g);
    assert_eq!(g[0], 1.0);
    assert!(Normalize::default_for(1).check(3).is_err());
}

#[test]
fn crop_and_flip_move_pixels() {
    let spec = ImageSpec::new(3, 2, 1).unwrap();
    let norm = Normalize { mean: vec![0.0], std: vec![1.0 / 255.0] };
    let src = [1, 2, 3, 4, 5, 6];
    let mut out = [0f32; 6];
    to_chw(&src, &spec, &norm, Placement { dy: 1, dx: -1, flip: false }, &mut out);
    assert_eq!(out, [0.0, 4.0, 5.0, 0.0, 0.0, 0.0]);
    to_chw(&src, &spec, &norm, Placement { dy: 0, dx: 0, flip: true }, &mut out);
    assert_eq!(out, [3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
    let aug = Augment { crop_padding: 4, hflip: true };
    let mut rng = tailor::rng::Rng::new(5);
    let draws: Vec<Placement> = (0..200).map(|_| aug.draw(&mut rng)).collect();
    assert!(draws.iter().all(|p| p.dx.abs() <= 4 && p.dy.abs() <= 4));
    assert!(draws.iter().any(|p| p.dx == -4) && draws.iter().any(|p| p.dy == 4) && draws.iter().any(|p| p.flip));
}

// ---- loader ----

#[test]
fn loader_is_deterministic_across_threads() {
    let ds = Arc::new(synthetic(&[20, 13]));
    let mut opts = LoaderOptions::new(8, 1, 9);
    opts.augment = Augment { crop_padding: 1, hflip: true };
    let with = |workers, prefetch| {
        let o = LoaderOptions { workers, prefetch, ..opts.clone() };
        Loader::new(ds.clone(), (0..33).collect(), o).unwrap()
    };
    let a: Vec<Batch> = with(2, 1).epoch(3).collect();
    assert_eq!(a, with(0, 1).epoch(3).collect::<Vec<_>>());
    assert_eq!(a, with(1, 4).epoch(3).collect::<Vec<_>>());
    assert_eq!(a[1], with(2, 2).batch(3, 1));
    assert_ne!(a, with(2, 1).epoch(4).collect::<Vec<_>>());
    assert_eq!(a.len(), 5);
    assert_eq!(a[4].len(), 1);
    let mut seen: Vec<usize> = a.iter().flat_map(|b| b.indices.clone()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..33).collect::<Vec<_>>());
    let BatchTargets::Single(t) = &a[0].targets else { panic!() };
    assert!(a[0].indices.iter().zip(t).all(|(&i, &l)| (i >= 20) == (l == 1)));
    // Dropping an epoch early stops its workers.
    assert_eq!(with(2, 1).epoch(0).take(1).count(), 1);
}

#[test]
fn loader_drop_last_and_multi_hot() {
    let mut ds = synthetic(&[3, 2]);
    ds.label_names.push("c2".into());
    ds.targets = Targets::Multi(vec![vec![0, 2], vec![], vec![1], vec![0], vec![1, 2]]);
    let mut opts = LoaderOptions::new(2, 1, 0);
    opts.shuffle = false;
    opts.drop_last = true;
    let l = Loader::new(Arc::new(ds), (0..5).collect(), opts).unwrap();
    let b: Vec<Batch> = l.epoch(0).collect();
    assert_eq!((l.len(), b.len()), (2, 2));
    assert_eq!(b[0].targets, BatchTargets::Multi(vec![1., 0., 1., 0., 0., 0.]));
    let v = |p: f32| (p / 255.0 - 0.5) / 0.5;
    assert_eq!(b[0].images, [v(0.0), v(0.0), v(1.0), v(1.0)]);
    assert!(Loader::new(l.dataset().clone(), vec![9], LoaderOptions::new(2, 1, 0)).is_err());
}

#[test]
fn loader_serves_pk_batches_deterministically() {
    // Labels of 9, 5, 1 and 7 images: label 2 is dropped (no positive possible).
    let ds = Arc::new(synthetic(&[9, 5, 1, 7]));
    let sampler = PkSampler::new(&ds, &(0..22).collect::<Vec<_>>(), 2, 3).unwrap();
    assert_eq!((sampler.dropped_labels(), sampler.batches()), (1, 21 / 6));
    let mut opts = LoaderOptions::new(99, 1, 5);
    opts.augment = Augment { crop_padding: 1, hflip: true };
    let with = |workers| {
        let o = LoaderOptions { workers, ..opts.clone() };
        Loader::with_pk(ds.clone(), sampler.clone(), o).unwrap()
    };
    let l = with(2);
    assert_eq!((l.len(), l.pk().map(|p| p.batch_size())), (3, Some(6)));
    let a: Vec<Batch> = l.epoch(1).collect();
    assert_eq!(a, with(0).epoch(1).collect::<Vec<_>>(), "the same batches whatever the threads");
    assert_ne!(a, l.epoch(2).collect::<Vec<_>>());
    assert_eq!(a.len(), 3);
    for b in &a {
        let BatchTargets::Single(t) = &b.targets else { panic!("single-label targets") };
        assert_eq!(t.len(), 6);
        assert!(t.chunks(3).all(|g| g.iter().all(|&l| l == g[0])), "K images of one label: {t:?}");
        assert_ne!(t[0], t[3], "P distinct labels: {t:?}");
        assert!(!t.contains(&2), "the dropped label never comes up");
    }
    let e = PkSampler::new(&ds, &(0..22).collect::<Vec<_>>(), 4, 2).err().unwrap();
    assert!(matches!(e, tailor::Error::Invalid(_)) && e.to_string().contains("P = 4"), "{e}");
    let mut multi = synthetic(&[2, 2]);
    multi.targets = Targets::Multi(vec![vec![0], vec![0], vec![1], vec![1]]);
    assert!(matches!(PkSampler::new(&multi, &[0, 1, 2, 3], 2, 2), Err(tailor::Error::Invalid(_))));
}

/// The full shared sets, timed: `cargo test --release --test data -- --ignored --nocapture`.
#[test]
#[ignore]
fn full_sets_load() {
    let t = std::time::Instant::now();
    let dir = shared().join("data/fashion-mnist");
    let ds = load_idx(&IdxSpec::new(&dir, "train"), &ImageSpec::new(28, 28, 1).unwrap()).unwrap();
    println!("fashion-mnist train: {} images in {:.2?}", ds.len(), t.elapsed());
    let t = std::time::Instant::now();
    let cols = ["gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "usage"];
    let spec = CsvSpec::new(
        shared().join("data/fashion-product-small/labels.csv"),
        LabelSource::Columns(cols.iter().map(|c| c.to_string()).collect()),
    );
    let mut ds = load_csv(&spec, &ImageSpec::new(64, 64, 3).unwrap()).unwrap();
    println!("fashion-product-small 64x64: {} images, {} labels in {:.2?}", ds.len(), ds.num_labels(), t.elapsed());
    let s = split(&mut ds, &SplitSpec { min_samples: 5, ..Default::default() }).unwrap();
    println!("split {} / {}, dropped {:?}", s.train.len(), s.val.len(), s.dropped);
    let mut opts = LoaderOptions::new(128, 3, 0);
    opts.augment = Augment { crop_padding: 4, hflip: true };
    let l = Loader::new(Arc::new(ds), s.train, opts).unwrap();
    let t = std::time::Instant::now();
    let n: usize = l.epoch(0).map(|b| b.len()).sum();
    println!("one epoch of {n} samples in {} batches: {:.2?}", l.len(), t.elapsed());
}

#[test]
fn images_too_large_for_host_memory_are_refused_before_decoding() {
    // Messages name settings as the command line's flags, as `tailor` prints them.
    tailor::setting::name_settings_as(tailor::setting::Naming::Flags);
    let huge = ImageSpec::new(100_000, 100_000, 3).unwrap();
    let err = tailor::data::image::check_fits_in_memory(1000, &huge).unwrap_err().to_string();
    assert!(err.contains("1000 images of 100000×100000×3") && err.contains("--image-size"), "{err}");
    assert!(tailor::data::image::check_fits_in_memory(1000, &rgb4()).is_ok());
}

/// Shards of a batch (what each MPI rank decodes) put together are the unsharded batch, with
/// the same augmentation per row, for shuffled and P×K batches; shards that cannot share a
/// batch equally are refused before any decoding.
#[test]
fn loader_shards_put_together_are_the_batch() {
    let ds = Arc::new(synthetic(&[20, 13]));
    let mut opts = LoaderOptions::new(6, 1, 4);
    opts.augment = Augment { crop_padding: 1, hflip: true };
    opts.drop_last = true;
    let sampler = PkSampler::new(&ds, &(0..33).collect::<Vec<_>>(), 2, 3).unwrap();
    let loaders = |shard: Shard| {
        let o = LoaderOptions { shard, ..opts.clone() };
        [
            Loader::new(ds.clone(), (0..33).collect(), o.clone()).unwrap(),
            Loader::with_pk(ds.clone(), sampler.clone(), o).unwrap(),
        ]
    };
    let whole = loaders(Shard::default());
    for count in [2, 3] {
        let parts: Vec<_> = (0..count).map(|index| loaders(Shard { index, count })).collect();
        for (k, l) in whole.iter().enumerate() {
            let want: Vec<Batch> = l.epoch(2).collect();
            let got: Vec<Vec<Batch>> = parts.iter().map(|p| p[k].epoch(2).collect()).collect();
            assert!(!want.is_empty() && (k == 1 || want.len() == 5), "batches per epoch");
            for (b, w) in want.iter().enumerate() {
                let rows: Vec<&Batch> = got.iter().map(|g| &g[b]).collect();
                assert!(rows.iter().all(|r| r.len() == 6 / count), "each shard gets its share");
                let cat = |f: fn(&Batch) -> Vec<f32>| rows.iter().flat_map(|r| f(r)).collect::<Vec<f32>>();
                assert_eq!(cat(|r| r.images.clone()), w.images, "images of batch {b}, {count} shards");
                assert_eq!(rows.iter().flat_map(|r| r.indices.clone()).collect::<Vec<_>>(), w.indices);
                let single = |t: &BatchTargets| match t {
                    BatchTargets::Single(v) => v.clone(),
                    BatchTargets::Multi(_) => panic!("single-label targets"),
                };
                assert_eq!(rows.iter().flat_map(|r| single(&r.targets)).collect::<Vec<_>>(), single(&w.targets));
            }
        }
    }
    let refused = |shard: Shard, drop_last: bool| {
        let o = LoaderOptions { shard, drop_last, ..opts.clone() };
        matches!(Loader::new(ds.clone(), (0..33).collect(), o), Err(tailor::Error::Invalid(_)))
    };
    assert!(refused(Shard { index: 0, count: 4 }, true), "6 rows into 4 shards");
    assert!(refused(Shard { index: 2, count: 2 }, true), "no shard 2 of 2");
    assert!(refused(Shard { index: 0, count: 0 }, true), "no shards");
    assert!(refused(Shard { index: 0, count: 2 }, false), "a partial last batch");
    assert!(!refused(Shard { index: 1, count: 2 }, true));
}
