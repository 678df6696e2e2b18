//! Reading inputs: PNG/JPEG files or folders of them (converted to the model's channels and
//! resized to, or checked against, its input size), and `.npy` arrays (taken as they are, in the
//! model's value scale). Reference sets: a folder with one subfolder per class (labels from the
//! subfolder names), a flat folder or files (labels from the model's predictions), or `.npy`
//! arrays with `--reference-labels`.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use image::imageops::FilterType;
use ndarray::{Array3, Array4, ArrayD, Axis, Ix1};

use crate::error::{usage, usage_in, Result};
use crate::model::PixelScaling;

/// What to do with an image whose size is not the model's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Fit {
    /// Resize it (bilinear, aspect ratio not kept).
    #[default]
    Resize,
    /// Stop with an error.
    Reject,
}

/// The order of a 3-channel model's input channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ChannelOrder {
    /// Red, green, blue (torchvision, timm, Keras applications).
    #[default]
    Rgb,
    /// Blue, green, red (OpenCV-trained and Caffe-era models).
    Bgr,
}

/// Photo preprocessing before the model's size is fitted, as torchvision's
/// `Resize(shorter side)` then `CenterCrop(h, w)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preprocess {
    /// Resize so that the shorter side has this many pixels (aspect ratio kept, bilinear with
    /// antialiasing).
    pub resize_shorter: Option<u32>,
    /// Centre crop `[height, width]` after the resize.
    pub crop: Option<[u32; 2]>,
    /// Channel order of a 3-channel model.
    pub channel_order: ChannelOrder,
}

impl Preprocess {
    /// The `[height, width]` an image of `width x height` pixels has after the resize and the
    /// crop (the crop's size when one is given).
    pub fn output_hw(&self, width: u32, height: u32) -> [usize; 2] {
        if let Some([h, w]) = self.crop {
            return [h as usize, w as usize];
        }
        let (w, h) = match self.resize_shorter {
            Some(side) => shorter_side_size(width, height, side),
            None => (width, height),
        };
        [h as usize, w as usize]
    }

    /// Applies the resize and the crop to a decoded image; `path` names it in errors.
    fn apply(&self, img: image::DynamicImage, path: &Path) -> Result<image::DynamicImage> {
        let img = match self.resize_shorter {
            Some(side) => {
                let (w, h) = shorter_side_size(img.width(), img.height(), side);
                img.resize_exact(w, h, FilterType::Triangle)
            }
            None => img,
        };
        match self.crop {
            None => Ok(img),
            Some([ch, cw]) => {
                let (w, h) = (img.width(), img.height());
                if ch > h || cw > w {
                    return Err(usage(format!(
                        "{}: the image is {w}x{h} pixels{}, smaller than the {cw}x{ch} crop \
                         (resize it first with --resize)",
                        path.display(),
                        if self.resize_shorter.is_some() {
                            " after --resize"
                        } else {
                            ""
                        }
                    )));
                }
                // torchvision's CenterCrop: int(round((h - ch) / 2)), Python's round (ties to
                // even).
                let top = ((h - ch) as f64 / 2.0).round_ties_even() as u32;
                let left = ((w - cw) as f64 / 2.0).round_ties_even() as u32;
                Ok(img.crop_imm(left, top, cw, ch))
            }
        }
    }
}

/// The `(width, height)` of a `width x height` image whose shorter side is resized to `side`:
/// torchvision's `Resize(side)`, the longer side `int(side * long / short)`.
fn shorter_side_size(width: u32, height: u32, side: u32) -> (u32, u32) {
    let long = |l: u32, s: u32| ((side as u64 * l as u64) / s.max(1) as u64).max(1) as u32;
    if width <= height {
        (side, long(height, width))
    } else {
        (long(width, height), side)
    }
}

/// How images become model inputs.
#[derive(Debug, Clone, Copy)]
pub struct ImageSpec {
    /// `[c, h, w]` of one sample.
    pub shape: [usize; 3],
    /// Pixel scaling.
    pub pixels: PixelScaling,
    /// Resize or reject images of another size.
    pub fit: Fit,
    /// Use `1 - p` instead of `p` (dark digits on white paper for an MNIST model).
    pub invert: bool,
    /// Resize, crop and channel order.
    pub prep: Preprocess,
}

/// One input sample.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Where it came from (a file, or `file[i]` for a row of an `.npy` batch).
    pub source: String,
    /// A file-name-safe name, unique among the inputs.
    pub name: String,
    /// The sample, `[c, h, w]`, in the model's value scale.
    pub x: Array3<f32>,
    /// Its class from the folder it is in (reference sets), if any.
    pub label: Option<String>,
    /// Its position among all the inputs (also in a shard of them).
    pub index: usize,
}

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn is_input_file(path: &Path) -> bool {
    let e = extension(path);
    path.is_file()
        && !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
        && (e == "npy" || IMAGE_EXTENSIONS.contains(&e.as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| usage_in(format!("reading {}", dir.display()), e))?;
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

/// The files named by `paths`: files as given, folders' PNG/JPEG/`.npy` files in name order.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if !p.exists() {
            return Err(usage(format!("{}: no such file or folder", p.display())));
        }
        if p.is_dir() {
            let found: Vec<PathBuf> = sorted_entries(p)?
                .into_iter()
                .filter(|f| is_input_file(f))
                .collect();
            if found.is_empty() {
                return Err(usage(format!(
                    "{}: the folder holds no .png, .jpg, .jpeg or .npy file",
                    p.display()
                )));
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

fn safe_name(s: &str) -> String {
    let n: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if n.is_empty() {
        "input".into()
    } else {
        n
    }
}

/// Reads every input named by `paths` (files or folders).
pub fn read_inputs(paths: &[PathBuf], spec: &ImageSpec) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for file in expand(paths)? {
        samples.extend(read_file(&file, spec, None)?);
    }
    unique_names(&mut samples);
    for (i, s) in samples.iter_mut().enumerate() {
        s.index = i;
    }
    Ok(samples)
}

/// Reads `shard`'s part of the inputs named by `paths` (all of them without a shard) and
/// returns it with the number of inputs in all: names and indices are those of the whole
/// run. When every input is an image (one sample per file), only the shard's files are
/// decoded.
pub fn read_input_shard(
    paths: &[PathBuf],
    spec: &ImageSpec,
    shard: Option<crate::shard::Shard>,
) -> Result<(Vec<Sample>, usize)> {
    let Some(shard) = shard else {
        let all = read_inputs(paths, spec)?;
        let n = all.len();
        return Ok((all, n));
    };
    let files = expand(paths)?;
    if files.iter().all(|f| extension(f) != "npy") {
        // One sample per file: the names of all, the images of the shard's.
        let mut names: Vec<Sample> = files
            .iter()
            .map(|f| Sample {
                source: f.display().to_string(),
                name: safe_name(
                    &f.file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                x: Array3::zeros((0, 0, 0)),
                label: None,
                index: 0,
            })
            .collect();
        unique_names(&mut names);
        let n = files.len();
        let mut samples = Vec::new();
        for i in shard.range(n) {
            samples.push(Sample {
                x: read_image(&files[i], spec)?,
                index: i,
                ..names[i].clone()
            });
        }
        return Ok((samples, n));
    }
    let all = read_inputs(paths, spec)?;
    let n = all.len();
    let range = shard.range(n);
    Ok((
        all.into_iter()
            .filter(|s| range.contains(&s.index))
            .collect(),
        n,
    ))
}

fn unique_names(samples: &mut [Sample]) {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for s in samples.iter_mut() {
        let n = seen.entry(s.name.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            s.name = format!("{}_{}", s.name, *n);
        }
    }
}

/// Reads one file: an image (one sample) or an `.npy` array (one sample `[c, h, w]` / `[h, w]`,
/// or a batch `[n, c, h, w]`).
fn read_file(path: &Path, spec: &ImageSpec, label: Option<&str>) -> Result<Vec<Sample>> {
    let stem = safe_name(
        &path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    if extension(path) == "npy" {
        let batch = read_npy_batch(path, spec.shape)?;
        let n = batch.len_of(Axis(0));
        return Ok(batch
            .axis_iter(Axis(0))
            .enumerate()
            .map(|(i, x)| Sample {
                source: if n == 1 {
                    path.display().to_string()
                } else {
                    format!("{}[{i}]", path.display())
                },
                name: if n == 1 {
                    stem.clone()
                } else {
                    format!("{stem}_{i}")
                },
                x: x.to_owned(),
                label: label.map(str::to_string),
                index: 0,
            })
            .collect());
    }
    Ok(vec![Sample {
        source: path.display().to_string(),
        name: stem,
        x: read_image(path, spec)?,
        label: label.map(str::to_string),
        index: 0,
    }])
}

/// Reads an `.npy` array of `f32` (or `f64`) values as a batch `[n, c, h, w]` of the model's
/// sample shape.
pub fn read_npy_batch(path: &Path, shape: [usize; 3]) -> Result<Array4<f32>> {
    let a = read_npy_f32(path)?;
    let [c, h, w] = shape;
    let s = a.shape().to_vec();
    let n = match s.as_slice() {
        [n, cc, hh, ww] if [*cc, *hh, *ww] == shape => *n,
        [cc, hh, ww] if [*cc, *hh, *ww] == shape => 1,
        [hh, ww] if c == 1 && [*hh, *ww] == [h, w] => 1,
        [n, hh, ww] if c == 1 && [*hh, *ww] == [h, w] => *n,
        _ => {
            return Err(usage(format!(
                "{}: an array of shape {s:?} does not fit the model, which takes samples of \
                 shape [{c}, {h}, {w}] (give [{c}, {h}, {w}] or [n, {c}, {h}, {w}])",
                path.display()
            )))
        }
    };
    if n == 0 {
        return Err(usage(format!(
            "{}: the array holds no sample",
            path.display()
        )));
    }
    let a = a
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((n, c, h, w))
        .map_err(|e| usage_in(path.display(), e))?;
    if let Some(v) = a.iter().find(|v| !v.is_finite()) {
        return Err(usage(format!(
            "{}: the array holds a non-finite value ({v})",
            path.display()
        )));
    }
    Ok(a)
}

/// Reads an `.npy` file of `f32` or `f64` values.
pub fn read_npy_f32(path: &Path) -> Result<ArrayD<f32>> {
    if !path.is_file() {
        return Err(usage(format!("{}: no such file", path.display())));
    }
    let ctx = || {
        format!(
            "{} is not a readable .npy array of f32 or f64 values",
            path.display()
        )
    };
    match ndarray_npy::read_npy::<_, ArrayD<f32>>(path) {
        Ok(a) => Ok(a),
        Err(_) => ndarray_npy::read_npy::<_, ArrayD<f64>>(path)
            .map(|a| a.mapv(|v| v as f32))
            .or_else(|_| {
                ndarray_npy::read_npy::<_, ArrayD<i64>>(path).map(|a| a.mapv(|v| v as f32))
            })
            .map_err(|e| usage(format!("{} ({e})", ctx()))),
    }
}

/// Reads an image file, converts it to the model's channels, resizes it (or rejects it) and
/// scales its pixels: `[c, h, w]`.
pub fn read_image(path: &Path, spec: &ImageSpec) -> Result<Array3<f32>> {
    let [c, h, w] = spec.shape;
    let reader = image::io::Reader::open(path)
        .map_err(|e| usage(format!("{}: cannot read the file ({e})", path.display())))?
        .with_guessed_format()
        .map_err(|e| usage(format!("{}: cannot read the file ({e})", path.display())))?;
    let img = reader
        .decode()
        .map_err(|e| usage(format!("{}: not a PNG or JPEG image ({e})", path.display())))?;
    let img = spec.prep.apply(img, path)?;
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    if (ih, iw) != (h, w) && spec.fit == Fit::Reject {
        return Err(usage(format!(
            "{}: the image is {iw}x{ih} pixels, the model takes {w}x{h} (use --fit resize to \
             resize it)",
            path.display()
        )));
    }
    let resize = (ih, iw) != (h, w);
    let unit = |p: u8| {
        let v = p as f32 / 255.0;
        spec.pixels.apply(if spec.invert { 1.0 - v } else { v })
    };
    match c {
        1 => {
            let mut g = img.to_luma8();
            if resize {
                g = image::imageops::resize(&g, w as u32, h as u32, FilterType::Triangle);
            }
            Ok(Array3::from_shape_fn((1, h, w), |(_, y, x)| {
                unit(g.get_pixel(x as u32, y as u32).0[0])
            }))
        }
        3 => {
            let mut rgb = img.to_rgb8();
            if resize {
                rgb = image::imageops::resize(&rgb, w as u32, h as u32, FilterType::Triangle);
            }
            let bgr = spec.prep.channel_order == ChannelOrder::Bgr;
            Ok(Array3::from_shape_fn((3, h, w), |(k, y, x)| {
                unit(rgb.get_pixel(x as u32, y as u32).0[if bgr { 2 - k } else { k }])
            }))
        }
        _ => Err(usage(format!(
            "{}: the model takes {c} channels per pixel; images can feed models of 1 \
             (grayscale) or 3 (RGB) channels, give .npy arrays otherwise",
            path.display()
        ))),
    }
}

/// A labelled reference set.
#[derive(Debug, Clone)]
pub struct ReferenceSet {
    /// The samples, `[n, c, h, w]`.
    pub x: Array4<f32>,
    /// Class indices, when the set is labelled.
    pub classes: Option<Vec<usize>>,
    /// Where each sample came from.
    pub sources: Vec<String>,
    /// The class names in index order, when the labels came from folder names that are not
    /// numbers.
    pub class_names: Option<Vec<String>>,
}

/// Reads a reference set from `paths`: a folder whose subfolders are classes (the subfolder
/// name is the label: a class index when every name is a number, otherwise the names in sorted
/// order are classes 0, 1, ...), or files/flat folders (unlabelled), with labels from
/// `labels_npy` (one class index per sample) when given.
pub fn read_reference(
    paths: &[PathBuf],
    labels_npy: Option<&Path>,
    spec: &ImageSpec,
) -> Result<ReferenceSet> {
    let mut samples = Vec::new();
    for p in paths {
        let subdirs: Vec<PathBuf> = if p.is_dir() {
            sorted_entries(p)?
                .into_iter()
                .filter(|d| d.is_dir())
                .collect()
        } else {
            Vec::new()
        };
        if subdirs.is_empty() {
            for f in expand(std::slice::from_ref(p))? {
                samples.extend(read_file(&f, spec, None)?);
            }
        } else {
            for d in subdirs {
                let label = d
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let files: Vec<PathBuf> = sorted_entries(&d)?
                    .into_iter()
                    .filter(|f| is_input_file(f))
                    .collect();
                for f in files {
                    samples.extend(read_file(&f, spec, Some(&label))?);
                }
            }
        }
    }
    if samples.is_empty() {
        return Err(usage("the reference set holds no image or array"));
    }
    let [c, h, w] = spec.shape;
    let mut x = Array4::zeros((samples.len(), c, h, w));
    for (i, s) in samples.iter().enumerate() {
        x.index_axis_mut(Axis(0), i).assign(&s.x);
    }
    let sources = samples.iter().map(|s| s.source.clone()).collect();
    let folder_labels: Vec<Option<String>> = samples.iter().map(|s| s.label.clone()).collect();
    let (classes, class_names) = if let Some(lp) = labels_npy {
        if folder_labels.iter().any(Option::is_some) {
            return Err(usage(
                "--reference-labels applies to unlabelled references; this reference set \
                 has labels from its subfolder names",
            ));
        }
        let l = read_npy_f32(lp)?;
        let l = l.into_dimensionality::<Ix1>().map_err(|_| {
            usage(format!(
                "{}: expected a 1-D array of class indices",
                lp.display()
            ))
        })?;
        if l.len() != samples.len() {
            return Err(usage(format!(
                "{}: {} labels for {} reference samples",
                lp.display(),
                l.len(),
                samples.len()
            )));
        }
        let mut classes = Vec::with_capacity(l.len());
        for &v in l.iter() {
            if !(v >= 0.0 && v.fract() == 0.0) {
                return Err(usage(format!(
                    "{}: label {v} is not a class index (an integer >= 0)",
                    lp.display()
                )));
            }
            classes.push(v as usize);
        }
        (Some(classes), None)
    } else if folder_labels.iter().all(Option::is_some) {
        let names: Vec<String> = folder_labels.into_iter().map(Option::unwrap).collect();
        if names.iter().all(|n| n.parse::<usize>().is_ok()) {
            (
                Some(names.iter().map(|n| n.parse().unwrap_or(0)).collect()),
                None,
            )
        } else {
            let mut distinct = names.clone();
            distinct.sort();
            distinct.dedup();
            let classes = names
                .iter()
                .map(|n| distinct.iter().position(|d| d == n).unwrap_or(0))
                .collect();
            (Some(classes), Some(distinct))
        }
    } else if folder_labels.iter().any(Option::is_some) {
        return Err(usage(
            "the reference set mixes files in class subfolders with unlabelled files",
        ));
    } else {
        (None, None)
    };
    Ok(ReferenceSet {
        x,
        classes,
        sources,
        class_names,
    })
}

/// The size of the first image among `paths` (files or folders) after `prep`, `[h, w]`: the
/// input size of a model whose height and width are dynamic. `None` when the first input is
/// not an image (an `.npy` array) or cannot be read (reading it later says why).
pub fn first_image_hw(paths: &[PathBuf], prep: &Preprocess) -> Option<[usize; 2]> {
    let first = expand(paths).ok()?.into_iter().next()?;
    if !IMAGE_EXTENSIONS.contains(&extension(&first).as_str()) {
        return None;
    }
    let (w, h) = image::image_dimensions(&first).ok()?;
    Some(prep.output_hw(w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_and_crop_follow_torchvision() {
        // Resize(256) of 500x375 (w x h): the shorter side 256, the longer int(256 * 500 / 375).
        assert_eq!(shorter_side_size(500, 375, 256), (341, 256));
        assert_eq!(shorter_side_size(375, 500, 256), (256, 341));
        assert_eq!(shorter_side_size(7, 7, 3), (3, 3));
        let prep = Preprocess {
            resize_shorter: Some(256),
            crop: Some([224, 200]),
            ..Preprocess::default()
        };
        assert_eq!(prep.output_hw(500, 375), [224, 200]);
        let resize_only = Preprocess {
            resize_shorter: Some(4),
            ..Preprocess::default()
        };
        assert_eq!(resize_only.output_hw(12, 8), [4, 6]);
        // The crop's offsets: (5 - 2) / 2 = 1.5 rounds to 2, (4 - 1) / 2 = 1.5 to 2 (ties to
        // even), as torchvision's CenterCrop.
        let img = image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(5, 4, |x, y| {
            image::Luma([(10 * y + x) as u8])
        }));
        let crop = Preprocess {
            crop: Some([1, 2]),
            ..Preprocess::default()
        };
        let c = crop
            .apply(img.clone(), Path::new("a.png"))
            .unwrap()
            .to_luma8();
        assert_eq!((c.width(), c.height()), (2, 1));
        assert_eq!(c.get_pixel(0, 0).0[0], 22);
        let too_big = Preprocess {
            crop: Some([5, 5]),
            ..Preprocess::default()
        };
        let e = too_big.apply(img, Path::new("a.png")).unwrap_err();
        assert!(
            e.one_line().contains("smaller than the 5x5 crop"),
            "{}",
            e.one_line()
        );
    }

    #[test]
    fn names_are_file_safe() {
        assert_eq!(safe_name("a b/c.d"), "a_b_c.d");
        assert_eq!(safe_name(""), "input");
        let mk = |n: &str| Sample {
            source: n.into(),
            name: n.into(),
            x: Array3::zeros((1, 1, 1)),
            label: None,
            index: 0,
        };
        let mut v = vec![mk("a"), mk("a"), mk("b")];
        unique_names(&mut v);
        let names: Vec<_> = v.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "a_2", "b"]);
    }
}
