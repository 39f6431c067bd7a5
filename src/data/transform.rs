//! Input transforms: padding, per-channel normalization, and the random crop and horizontal flip
//! that augment training batches.
//!
//! In: a [`Transforms`] read from the experiment's top-level `transforms:` key, and batches of
//! images as 4-d tensors `[n, c, h, w]` (callers view the flat `[n, c * h * w]` tensors, pixel
//! order CHW, values in [0, 1], as `[n, c, h, w]` first). Out: new 4-d tensors on the same device
//! and of the same kind. There are two stages, matching torchvision's `Pad -> RandomCrop ->
//! RandomHorizontalFlip -> Normalize` pipeline on raw pixels:
//! - [`Transforms::apply_eval`], deterministic, run once on a task's train AND test tensors when
//!   they are built: zero padding in pixel space, then `(x - mean_c) / std_c`;
//! - [`Transforms::augment`], random, run on each training batch after `apply_eval`: random crop
//!   (its border filled with the normalized value of a zero pixel, so the result is exactly what
//!   cropping raw pixels and then normalizing would give) and horizontal flip.
//!
//! This module must not loop over images one by one, hold state, or draw randomness from
//! anywhere but the `ChaCha8Rng` it is handed: every random number is drawn on the host in the
//! order documented on [`Transforms::augment`], and only then turned into index tensors for
//! batched gathers on the tensor's device, so one seed gives the same batch on CPU and GPU. A
//! configuration with nothing random draws nothing, so runs without augmentation keep the random
//! streams they had before this module existed. (tch's `vision::dataset` helpers are avoided for
//! that reason: they draw from an unseeded thread RNG, one sample at a time.)

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Largest `pad` and `random_crop.padding` [`Transforms::validate`] accepts: far beyond any
/// published protocol (CIFAR uses 4, MNIST-to-32x32 uses 2), small enough that a typo such as
/// 400 is caught before it multiplies the memory of every task's tensors.
pub const MAX_PADDING: usize = 64;

/// The `transforms:` section of an experiment: what is done to every image before the model
/// sees it.
///
/// Every field defaults to "do nothing", so the [`Default`] value is the identity
/// ([`Transforms::is_identity`]). Fields at their default are left out when serializing: the
/// default serializes as an empty map, and adding a field to this type later does not change how
/// existing configurations serialize (the serialization is part of a job's identity hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Transforms {
    /// Zero pixels added on every side of every image, all splits (e.g. 2 makes MNIST's 28x28
    /// into 32x32). Applied in pixel space, before `normalize`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pad: usize,
    /// Per-channel normalization `(x - mean) / std`, all splits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Normalize>,
    /// Training batches only: pad by `padding`, then crop back to the image size at a random
    /// offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_crop: Option<RandomCrop>,
    /// Training batches only: mirror each image left to right with probability 0.5.
    #[serde(default, skip_serializing_if = "is_false")]
    pub horizontal_flip: bool,
}

/// Per-channel mean and standard deviation, in pixel units ([0, 1]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// One value per channel, or one value shared by every channel.
    pub mean: Vec<f64>,
    /// One value per channel, or one shared value; each finite and > 0.
    pub std: Vec<f64>,
}

/// Random crop after padding, as torchvision's `RandomCrop(size, padding)` with `size` the
/// image's own size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomCrop {
    /// Pixels added on every side before cropping, 1..=[`MAX_PADDING`]; the crop's offsets are
    /// uniform in `0..=2 * padding` on each axis.
    pub padding: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Transforms {
    /// True for the default value, which changes no image and draws no random number; callers
    /// may then leave the section out of a job's identity, so identities from before this section
    /// existed stay the same.
    pub fn is_identity(&self) -> bool {
        *self == Transforms::default()
    }

    /// True when [`augment`](Self::augment) changes batches (and draws from its rng).
    pub fn has_augmentation(&self) -> bool {
        self.crop_padding() > 0 || self.horizontal_flip
    }

    /// Checks the section against images of `channels` channels. The message names the field,
    /// the value found and what is allowed.
    pub fn validate(&self, channels: usize) -> Result<(), String> {
        if self.pad > MAX_PADDING {
            return Err(format!(
                "transforms.pad is {}; allowed: 0..={MAX_PADDING}",
                self.pad
            ));
        }
        if let Some(crop) = &self.random_crop {
            if crop.padding == 0 || crop.padding > MAX_PADDING {
                return Err(format!(
                    "transforms.random_crop.padding is {}; allowed: 1..={MAX_PADDING} (leave \
                     random_crop out for no crop)",
                    crop.padding
                ));
            }
        }
        if let Some(norm) = &self.normalize {
            for (field, values) in [("mean", &norm.mean), ("std", &norm.std)] {
                if values.len() != channels && values.len() != 1 {
                    return Err(format!(
                        "transforms.normalize.{field} has {} values {values:?} for images of \
                         {channels} channels; allowed: {channels} (one per channel) or 1 (shared \
                         by all channels)",
                        values.len()
                    ));
                }
            }
            if let Some((i, m)) = norm.mean.iter().enumerate().find(|(_, m)| !m.is_finite()) {
                return Err(format!(
                    "transforms.normalize.mean[{i}] is {m}; allowed: any finite number"
                ));
            }
            if let Some((i, s)) = norm
                .std
                .iter()
                .enumerate()
                .find(|(_, s)| !(s.is_finite() && **s > 0.0))
            {
                return Err(format!(
                    "transforms.normalize.std[{i}] is {s}; allowed: a finite number > 0"
                ));
            }
        }
        Ok(())
    }

    /// The shape `(channels, height, width)` of an image after [`apply_eval`](Self::apply_eval)
    /// (and after [`augment`](Self::augment), which keeps it): `pad` grows height and width by
    /// `2 * pad`.
    pub fn output_shape(
        &self,
        channels: usize,
        height: usize,
        width: usize,
    ) -> (usize, usize, usize) {
        (channels, height + 2 * self.pad, width + 2 * self.pad)
    }

    /// The deterministic part, for train and test images alike: zero padding by `pad` on every
    /// side, then `(x - mean_c) / std_c`. Padding comes first, in pixel space, as torchvision's
    /// `Pad` before `Normalize`, so the border holds the normalized value of a black pixel.
    ///
    /// `x` is `[n, c, h, w]`; the result is `[n, c, h + 2 pad, w + 2 pad]`, same device and kind.
    /// The identity configuration returns `x` itself (a shallow clone).
    ///
    /// # Panics
    /// If `x` is not 4-d or its channel count does not fit `normalize` (a configuration that
    /// passed [`validate`](Self::validate) for that count fits).
    pub fn apply_eval(&self, x: &Tensor) -> Tensor {
        let padded = if self.pad > 0 {
            let p = self.pad as i64;
            // constant_pad_nd lists (left, right, top, bottom) for the last two dimensions.
            x.constant_pad_nd([p, p, p, p])
        } else {
            x.shallow_clone()
        };
        self.normalize(&padded)
    }

    /// The random part, for one training batch that has already been through
    /// [`apply_eval`](Self::apply_eval): random crop with `random_crop.padding` p, then
    /// horizontal flip with probability 0.5, each drawn per sample.
    ///
    /// The crop of sample i takes, from the image padded by p on every side, the window of the
    /// image's own size whose top-left corner is at `(dy, dx)`; `dy = dx = p` leaves the image
    /// as it was. The padding holds `(0 - mean_c) / std_c` (0 without `normalize`), the value a
    /// zero pixel has after `apply_eval`, so the result equals torchvision's `RandomCrop(size,
    /// padding=p)` and `RandomHorizontalFlip()` on raw pixels followed by `Normalize`.
    ///
    /// Random numbers, all from `rng` on the host, in this order: for each sample i = 0..n,
    /// - if there is a crop: `dy = rng.gen_range(0..=2p)`, then `dx = rng.gen_range(0..=2p)`
    ///   (both `u32`);
    /// - if `horizontal_flip`: `flip = rng.gen_bool(0.5)`.
    ///
    /// Nothing else is drawn, and nothing at all when [`has_augmentation`](Self::has_augmentation)
    /// is false: then `x` itself comes back (a shallow clone). The streams are those of rand 0.8
    /// and rand_chacha 0.3. The draws become index tensors and one batched gather on `x`'s
    /// device, so CPU and GPU give the same batch for the same rng state.
    ///
    /// `x` is `[n, c, h, w]`; the result has the same shape, device and kind.
    ///
    /// # Panics
    /// If augmenting and `x` is not 4-d, or its channel count does not fit `normalize`.
    pub fn augment(&self, x: &Tensor, rng: &mut ChaCha8Rng) -> Tensor {
        if !self.has_augmentation() {
            return x.shallow_clone();
        }
        let (n, c, h, w) = x
            .size4()
            .expect("Transforms::augment takes images [n, c, h, w]");
        let p = self.crop_padding() as i64;
        let draws = self.draw(n, rng);

        // Source row and column of every output pixel, in the unpadded image's coordinates,
        // clamped into it; `*_inside` says whether the unclamped source lies in the image (else
        // the pixel comes from the crop's padding and gets the fill value).
        let cap = draws.len();
        let (mut rows, mut rows_inside) = (Vec::with_capacity(cap * h as usize), Vec::new());
        let (mut cols, mut cols_inside) = (Vec::with_capacity(cap * w as usize), Vec::new());
        for d in &draws {
            for y in 0..h {
                let src = y + d.dy - p;
                rows.push(src.clamp(0, h - 1));
                rows_inside.push((0..h).contains(&src));
            }
            for col in 0..w {
                // The flip mirrors the cropped window, as torchvision flips after cropping.
                let cropped = if d.flip { w - 1 - col } else { col };
                let src = cropped + d.dx - p;
                cols.push(src.clamp(0, w - 1));
                cols_inside.push((0..w).contains(&src));
            }
        }

        let device = x.device();
        let on_device = |v: &Tensor, shape: [i64; 4]| v.view(shape).to_device(device);
        let batch = Tensor::arange(n, (Kind::Int64, device)).view([n, 1, 1, 1]);
        let channel = Tensor::arange(c, (Kind::Int64, device)).view([1, c, 1, 1]);
        let rows = on_device(&Tensor::from_slice(&rows), [n, 1, h, 1]);
        let cols = on_device(&Tensor::from_slice(&cols), [n, 1, 1, w]);
        // The four index tensors broadcast to [n, c, h, w]: out[i, k, y, x] = x[i, k, rows[i, y],
        // cols[i, x]], one gather for crop and flip together.
        let out = x.index(&[Some(batch), Some(channel), Some(rows), Some(cols)]);
        if p == 0 {
            return out;
        }
        let inside = on_device(&Tensor::from_slice(&rows_inside), [n, 1, h, 1])
            .logical_and(&on_device(&Tensor::from_slice(&cols_inside), [n, 1, 1, w]));
        out.where_self(&inside, &self.fill(x))
    }

    /// The crop's padding, 0 when there is no crop (a padding of 0 would crop nothing, so it
    /// counts as no crop and draws nothing).
    fn crop_padding(&self) -> usize {
        self.random_crop.as_ref().map_or(0, |c| c.padding)
    }

    /// The per-sample random numbers, in the order documented on [`augment`](Self::augment).
    fn draw(&self, n: i64, rng: &mut ChaCha8Rng) -> Vec<Draw> {
        let p = self.crop_padding() as u32;
        (0..n)
            .map(|_| {
                let (dy, dx) = if p > 0 {
                    let dy = rng.gen_range(0..=2 * p);
                    (i64::from(dy), i64::from(rng.gen_range(0..=2 * p)))
                } else {
                    // Offsets of an uncropped image: the window sits where the image is.
                    (0, 0)
                };
                let flip = self.horizontal_flip && rng.gen_bool(0.5);
                Draw { dy, dx, flip }
            })
            .collect()
    }

    /// `(x - mean_c) / std_c` on `[.., c, h, w]`, or `x` without `normalize`. Subtract then
    /// divide in `x`'s kind, as torchvision's `Normalize`, so values match it bit for bit.
    fn normalize(&self, x: &Tensor) -> Tensor {
        match &self.normalize {
            None => x.shallow_clone(),
            Some(norm) => (x - per_channel(&norm.mean, x)) / per_channel(&norm.std, x),
        }
    }

    /// What a zero pixel becomes after [`normalize`](Self::normalize), `[1, c or 1, 1, 1]`:
    /// computed by the same tensor ops, so the crop's border is bit-identical to a padded pixel.
    fn fill(&self, like: &Tensor) -> Tensor {
        self.normalize(&Tensor::zeros([1, 1, 1, 1], (like.kind(), like.device())))
    }
}

/// One sample's random numbers.
struct Draw {
    dy: i64,
    dx: i64,
    flip: bool,
}

/// `values` as a `[1, len, 1, 1]` tensor of `like`'s kind on its device, to broadcast over the
/// channels of `[n, c, h, w]` (a single value broadcasts over all of them).
fn per_channel(values: &[f64], like: &Tensor) -> Tensor {
    Tensor::from_slice(values)
        .view([1, values.len() as i64, 1, 1])
        .to_kind(like.kind())
        .to_device(like.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use tch::Device;

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.reshape([-1])).unwrap()
    }

    /// A batch whose every pixel has a distinct value in [0, 1).
    fn distinct_batch(n: i64, c: i64, h: i64, w: i64) -> (Vec<f32>, Tensor) {
        let total = n * c * h * w;
        let v: Vec<f32> = (0..total).map(|i| i as f32 / total as f32).collect();
        let t = Tensor::from_slice(&v).view([n, c, h, w]);
        (v, t)
    }

    fn normalize(mean: &[f64], std: &[f64]) -> Option<Normalize> {
        Some(Normalize {
            mean: mean.to_vec(),
            std: std.to_vec(),
        })
    }

    /// Crop by `p` with border `fill[channel]` and optional flip, recomputed with plain loops;
    /// the random numbers are re-drawn from `rng` in the order `augment` documents.
    fn brute_force(
        x: &[f32],
        (n, c, h, w): (usize, usize, usize, usize),
        p: usize,
        flip: bool,
        fill: &[f32],
        rng: &mut ChaCha8Rng,
    ) -> Vec<f32> {
        let mut out = vec![f32::NAN; x.len()];
        for i in 0..n {
            let (mut dy, mut dx) = (p, p);
            if p > 0 {
                dy = rng.gen_range(0..=2 * p as u32) as usize;
                dx = rng.gen_range(0..=2 * p as u32) as usize;
            }
            let flipped = flip && rng.gen_bool(0.5);
            for k in 0..c {
                // The padded image, pixel by pixel.
                let padded = |py: usize, px: usize| -> f32 {
                    if py < p || py >= h + p || px < p || px >= w + p {
                        fill[k]
                    } else {
                        x[((i * c + k) * h + py - p) * w + px - p]
                    }
                };
                for y in 0..h {
                    for col in 0..w {
                        let cropped_col = if flipped { w - 1 - col } else { col };
                        out[((i * c + k) * h + y) * w + col] = padded(y + dy, cropped_col + dx);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn pad_adds_a_zero_border_and_keeps_the_interior() {
        let t = Transforms {
            pad: 2,
            ..Transforms::default()
        };
        let (_, x) = distinct_batch(2, 1, 3, 3);
        let x = x + 0.5; // no zero inside, so a zero can only come from the border
        let y = t.apply_eval(&x);
        assert_eq!(y.size(), [2, 1, 7, 7]);
        assert_eq!(t.output_shape(1, 3, 3), (1, 7, 7));
        let interior = y.narrow(2, 2, 3).narrow(3, 2, 3);
        assert_eq!(values(&interior), values(&x));
        let v = values(&y);
        for (idx, value) in v.iter().enumerate() {
            let (row, col) = ((idx / 7) % 7, idx % 7);
            let border = !(2..5).contains(&row) || !(2..5).contains(&col);
            assert_eq!(
                *value == 0.0,
                border,
                "pixel {idx} ({row}, {col}) is {value}"
            );
        }
    }

    #[test]
    fn normalize_is_per_channel_and_follows_the_padding() {
        // One 2-channel 1x2 image: channel 0 = [0.75, 0.25], channel 1 = [0.0, 1.0].
        let x = Tensor::from_slice(&[0.75f32, 0.25, 0.0, 1.0]).view([1, 2, 1, 2]);
        let t = Transforms {
            normalize: normalize(&[0.5, 0.25], &[0.25, 0.5]),
            ..Transforms::default()
        };
        // (0.75 - 0.5) / 0.25 = 1, (0.25 - 0.5) / 0.25 = -1; (0 - 0.25) / 0.5 = -0.5,
        // (1 - 0.25) / 0.5 = 1.5.
        assert_eq!(values(&t.apply_eval(&x)), [1.0, -1.0, -0.5, 1.5]);

        // A single mean and std are shared by both channels: (v - 0.5) / 0.5.
        let shared = Transforms {
            normalize: normalize(&[0.5], &[0.5]),
            ..Transforms::default()
        };
        assert_eq!(values(&shared.apply_eval(&x)), [0.5, -0.5, -1.0, 1.0]);

        // Padding first, in pixel space: the border is a normalized zero, -2 and -0.5.
        let padded = Transforms { pad: 1, ..t };
        let y = padded.apply_eval(&x);
        assert_eq!(y.size(), [1, 2, 3, 4]);
        #[rustfmt::skip]
        let expected = [
            -2.0, -2.0, -2.0, -2.0,
            -2.0, 1.0, -1.0, -2.0,
            -2.0, -2.0, -2.0, -2.0,
            -0.5, -0.5, -0.5, -0.5,
            -0.5, -0.5, 1.5, -0.5,
            -0.5, -0.5, -0.5, -0.5,
        ];
        assert_eq!(values(&y), expected);
    }

    fn crop_and_flip() -> Transforms {
        Transforms {
            normalize: normalize(&[0.5, 0.25, 0.1], &[0.25, 0.5, 0.3]),
            random_crop: Some(RandomCrop { padding: 2 }),
            horizontal_flip: true,
            ..Transforms::default()
        }
    }

    #[test]
    fn augment_is_deterministic_per_seed() {
        let t = crop_and_flip();
        let (_, x) = distinct_batch(8, 3, 6, 6);
        let x = t.apply_eval(&x);
        let run = |seed: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let y = t.augment(&x, &mut rng);
            (values(&y), rng.get_word_pos())
        };
        let (a, pos_a) = run(7);
        let (b, pos_b) = run(7);
        let (c, _) = run(8);
        assert_eq!(a, b);
        assert_eq!(pos_a, pos_b);
        assert_ne!(a, c);
        assert_ne!(a, values(&x), "seed 7 should move at least one of 8 images");
    }

    #[test]
    fn nothing_random_returns_the_input_and_draws_nothing() {
        let (_, x) = distinct_batch(4, 3, 5, 5);
        for t in [
            Transforms::default(),
            Transforms {
                pad: 3,
                normalize: normalize(&[0.5], &[0.25]),
                ..Transforms::default()
            },
        ] {
            assert!(!t.has_augmentation());
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let before = rng.get_word_pos();
            let y = t.augment(&x, &mut rng);
            assert_eq!(rng.get_word_pos(), before, "{t:?} drew from the rng");
            assert_eq!(values(&y), values(&x));
        }
        assert!(crop_and_flip().has_augmentation());
    }

    #[test]
    fn crop_matches_a_brute_force_crop_with_the_normalized_fill() {
        let t = Transforms {
            horizontal_flip: false,
            ..crop_and_flip()
        };
        let (n, c, h, w) = (6, 3, 4, 5);
        let (_, raw) = distinct_batch(n, c, h, w);
        let x = t.apply_eval(&raw);
        let x_host = values(&x);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut replay = rng.clone();
        let got = values(&t.augment(&x, &mut rng));
        // (0 - mean) / std by hand: -2, -0.5 and -1/3 (the last as f32 arithmetic rounds it).
        let fill = [-2.0f32, -0.5, (0.0f32 - 0.1) / 0.3];
        let shape = (n as usize, c as usize, h as usize, w as usize);
        let expected = brute_force(&x_host, shape, 2, false, &fill, &mut replay);
        assert_eq!(got, expected);
        assert_eq!(rng.get_word_pos(), replay.get_word_pos());
        for f in fill {
            assert!(expected.contains(&f), "seed 3 shows no border with {f}");
        }
    }

    #[test]
    fn flip_matches_a_brute_force_mirror() {
        let t = Transforms {
            horizontal_flip: true,
            ..Transforms::default()
        };
        let (n, c, h, w) = (8, 2, 3, 4);
        let (x_host, x) = distinct_batch(n, c, h, w);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut replay = rng.clone();
        let got = values(&t.augment(&x, &mut rng));
        let shape = (n as usize, c as usize, h as usize, w as usize);
        let expected = brute_force(&x_host, shape, 0, true, &[], &mut replay);
        assert_eq!(got, expected);
        // Both outcomes occur among the 8 samples, so the test sees flipped and unflipped ones.
        let per_image = (c * h * w) as usize;
        let same: Vec<bool> = (0..n as usize)
            .map(|i| got[i * per_image..][..per_image] == x_host[i * per_image..][..per_image])
            .collect();
        assert!(same.contains(&true) && same.contains(&false), "{same:?}");
    }

    #[test]
    fn pipeline_equals_torchvision_order_on_raw_pixels() {
        // torchvision: Pad(1) -> RandomCrop(padding=3) -> RandomHorizontalFlip -> Normalize, all
        // on raw pixels with zero fill; here: apply_eval then augment on normalized tensors.
        let t = Transforms {
            pad: 1,
            random_crop: Some(RandomCrop { padding: 3 }),
            ..crop_and_flip()
        };
        let (n, c, h, w) = (5usize, 3usize, 4usize, 3usize);
        let (raw, x) = distinct_batch(n as i64, c as i64, h as i64, w as i64);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut replay = rng.clone();
        let got = values(&t.augment(&t.apply_eval(&x), &mut rng));

        // Pad(1) by loops, then the random crop and flip with zero fill, then Normalize by hand.
        let (ph, pw) = (h + 2, w + 2);
        let mut padded = vec![0.0f32; n * c * ph * pw];
        for (idx, v) in raw.iter().enumerate() {
            let (img, y, col) = (idx / (h * w), (idx / w) % h, idx % w);
            padded[(img * ph + y + 1) * pw + col + 1] = *v;
        }
        let moved = brute_force(&padded, (n, c, ph, pw), 3, true, &[0.0; 3], &mut replay);
        let norm = t.normalize.as_ref().unwrap();
        let expected: Vec<f32> = moved
            .iter()
            .enumerate()
            .map(|(idx, v)| {
                let k = (idx / (ph * pw)) % c;
                (v - norm.mean[k] as f32) / norm.std[k] as f32
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn empty_batch_is_fine() {
        let t = crop_and_flip();
        let x = Tensor::zeros([0, 3, 4, 4], (Kind::Float, Device::Cpu));
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(t.augment(&x, &mut rng).size(), [0, 3, 4, 4]);
        assert_eq!(rng.get_word_pos(), 0);
    }

    /// Same seed, same batch on CPU and GPU; runs only where CUDA is available.
    #[test]
    fn cuda_gives_the_cpu_batch() {
        if !tch::Cuda::is_available() {
            eprintln!("no CUDA device; skipped");
            return;
        }
        let t = crop_and_flip();
        let (_, x) = distinct_batch(16, 3, 8, 8);
        let x = t.apply_eval(&x);
        let cpu = t.augment(&x, &mut ChaCha8Rng::seed_from_u64(2));
        let gpu = t.augment(
            &x.to_device(Device::Cuda(0)),
            &mut ChaCha8Rng::seed_from_u64(2),
        );
        assert_eq!(values(&cpu), values(&gpu.to_device(Device::Cpu)));
    }

    #[test]
    fn validate_names_the_field_and_the_allowed_range() {
        let with = |mean: &[f64], std: &[f64]| Transforms {
            normalize: normalize(mean, std),
            ..Transforms::default()
        };
        assert_eq!(with(&[0.5, 0.5, 0.5], &[0.25; 3]).validate(3), Ok(()));
        assert_eq!(with(&[0.5], &[0.25]).validate(3), Ok(()));
        assert_eq!(crop_and_flip().validate(3), Ok(()));

        let err = with(&[0.5, 0.5], &[0.25]).validate(3).unwrap_err();
        assert!(
            err.contains("normalize.mean") && err.contains("2 values") && err.contains("3"),
            "{err}"
        );
        let err = with(&[0.5], &[0.25, 0.0]).validate(2).unwrap_err();
        assert!(
            err.contains("normalize.std[1] is 0") && err.contains("> 0"),
            "{err}"
        );
        let err = with(&[f64::NAN], &[0.25]).validate(1).unwrap_err();
        assert!(err.contains("normalize.mean[0] is NaN"), "{err}");
        let err = with(&[0.5], &[f64::NAN]).validate(1).unwrap_err();
        assert!(err.contains("normalize.std[0] is NaN"), "{err}");
        let err = with(&[0.5], &[f64::INFINITY]).validate(1).unwrap_err();
        assert!(err.contains("normalize.std[0] is inf"), "{err}");

        let pad = Transforms {
            pad: 65,
            ..Transforms::default()
        };
        let err = pad.validate(1).unwrap_err();
        assert!(
            err.contains("transforms.pad is 65") && err.contains("0..=64"),
            "{err}"
        );
        for padding in [0, 65] {
            let crop = Transforms {
                random_crop: Some(RandomCrop { padding }),
                ..Transforms::default()
            };
            let err = crop.validate(1).unwrap_err();
            assert!(
                err.contains(&format!("random_crop.padding is {padding}"))
                    && err.contains("1..=64"),
                "{err}"
            );
        }
    }

    #[test]
    fn output_shape_grows_by_the_padding_only() {
        let t = Transforms {
            pad: 2,
            ..crop_and_flip()
        };
        assert_eq!(t.output_shape(1, 28, 28), (1, 32, 32));
        assert_eq!(crop_and_flip().output_shape(3, 32, 30), (3, 32, 30));
        let (_, x) = distinct_batch(2, 3, 5, 4);
        let y = t.augment(&t.apply_eval(&x), &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(y.size(), [2, 3, 9, 8]);
    }

    #[test]
    fn yaml_is_strict_and_the_default_is_the_identity() {
        let yaml = "pad: 2\n\
                    normalize: {mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}\n\
                    random_crop: {padding: 4}\n\
                    horizontal_flip: true\n";
        let t: Transforms = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(
            t,
            Transforms {
                pad: 2,
                normalize: normalize(&[0.5; 3], &[0.25; 3]),
                random_crop: Some(RandomCrop { padding: 4 }),
                horizontal_flip: true,
            }
        );
        assert!(!t.is_identity());
        let again: Transforms = serde_yaml::from_str(&serde_yaml::to_string(&t).unwrap()).unwrap();
        assert_eq!(again, t);

        let err = serde_yaml::from_str::<Transforms>("pad: 2\nflip: true\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `flip`"), "{err}");
        let err = serde_yaml::from_str::<Transforms>("random_crop: {padding: 4, size: 32}\n")
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `size`"), "{err}");

        let empty: Transforms = serde_yaml::from_str("{}").unwrap();
        assert!(empty.is_identity());
        assert!(Transforms::default().is_identity());
        // The default serializes as an empty map, and a setting shows only itself.
        assert_eq!(serde_json::to_string(&Transforms::default()).unwrap(), "{}");
        let pad_only = Transforms {
            pad: 2,
            ..Transforms::default()
        };
        assert_eq!(serde_json::to_string(&pad_only).unwrap(), r#"{"pad":2}"#);
        assert!(!pad_only.is_identity());
    }
}
