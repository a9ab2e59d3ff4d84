//! A small labelled image dataset the run and CLI tests write for themselves.

use std::path::{Path, PathBuf};

/// An empty folder for one test, named by the test file (`prefix`), the process and `name`.
pub fn temp(prefix: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tailor-{prefix}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `n` 16×16 gray PNGs of 3 classes (a bright band whose row depends on the class) in
/// `dir/images`, and `dir/labels.csv` with columns `file,label,tags,group` (tags a multi-label
/// column, groups of two images for --split-by).
pub fn bands(dir: &Path, n: usize) -> PathBuf {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let mut csv = String::from("file,label,tags,group\n");
    for i in 0..n {
        let class = i % 3;
        let img = image::GrayImage::from_fn(16, 16, |x, y| {
            let band = (y as usize / 5) == class;
            image::Luma([if band { 200 } else { ((x * 7 + y * 3 + i as u32) % 40) as u8 }])
        });
        let name = format!("{i:03}.png");
        img.save(dir.join("images").join(&name)).unwrap();
        let tags = ["a;b", "b", "a;c"][class];
        csv += &format!("{name},{},{tags},g{}\n", ["cat", "dog", "owl"][class], i / 2);
    }
    let path = dir.join("labels.csv");
    std::fs::write(&path, csv).unwrap();
    path
}
