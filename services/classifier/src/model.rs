//! The model: multinomial logistic regression over hashed features, one
//! softmax head per label (category, urgency, whistle level) sharing the
//! features. Trained by AdaGrad with L2 and a fixed shuffle, so the same
//! corpus always gives the same file. Stored sparse and quantized: only
//! buckets seen in training, eight bits a weight with one scale per head.
//!
//! [`NaiveBayes`] is the alternative it was measured against.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use crate::features::{FeatureSpec, Features, fnv1a};
use crate::{Error, Result};

const MAGIC: &[u8; 16] = b"whistle-clf-v1\n\0";

/// Settings of a training run (saved in the model for the record).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainSpec {
    pub epochs: u32,
    pub learning_rate: f32,
    pub l2: f32,
    pub seed: u64,
    /// The urgent recall the urgent threshold is chosen to keep on
    /// requests the model has not seen (out-of-fold readings of the train
    /// split): a city trades missed danger against false alarms here.
    /// (Absent from model files written before it: they still load.)
    #[serde(default = "default_urgent_recall")]
    pub urgent_recall: f32,
}

fn default_urgent_recall() -> f32 {
    TrainSpec::default().urgent_recall
}

impl Default for TrainSpec {
    fn default() -> Self {
        TrainSpec { epochs: 30, learning_rate: 0.2, l2: 1e-6, seed: 12345, urgent_recall: 0.95 }
    }
}

/// How sure the model must be before its urgency or whistle level is
/// taken over the default (ordinary): chosen in training on out-of-fold
/// readings of the train split, saved with the model. The city's signals and the ticket history decide apart from
/// these.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decisions {
    pub urgent_above: f32,
    /// Important rather than ordinary when its probability is at least
    /// this share of ordinary's.
    pub important_ratio: f32,
    pub key_above: f32,
    pub difficult_above: f32,
}

impl Default for Decisions {
    fn default() -> Self {
        Decisions { urgent_above: 0.2, important_ratio: 0.85, key_above: 0.5, difficult_above: 0.5 }
    }
}

/// A head's name and its labels, in the order of its probabilities.
pub type HeadLabels<'a> = (&'a str, Vec<String>);

/// One training example: features and the label index of each head.
#[derive(Debug, Clone)]
pub struct Sample {
    pub features: Features,
    pub labels: Vec<usize>,
}

/// The part of the model file that is not weights.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Header {
    features: FeatureSpec,
    train: TrainSpec,
    decisions: Decisions,
    heads: Vec<HeadHeader>,
    /// What it was trained on, for the record.
    trained_on: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct HeadHeader {
    name: String,
    labels: Vec<String>,
    bias: Vec<f32>,
    scale: f32,
}

/// A trained model, ready to predict.
#[derive(Debug, Clone)]
pub struct Model {
    header: Header,
    /// Bucket -> row in `weights`.
    rows: HashMap<u32, u32>,
    /// Quantized weights, `width` per row: every head's labels in order.
    weights: Vec<i8>,
    width: usize,
    offsets: Vec<usize>,
}

impl Model {
    pub fn features(&self) -> &FeatureSpec {
        &self.header.features
    }

    pub fn trained_on(&self) -> &str {
        &self.header.trained_on
    }

    pub fn decisions(&self) -> &Decisions {
        &self.header.decisions
    }

    /// The labels of head `head`, in the order of its probabilities.
    pub fn labels(&self, head: usize) -> &[String] {
        &self.header.heads[head].labels
    }

    pub fn head_names(&self) -> Vec<&str> {
        self.header.heads.iter().map(|h| h.name.as_str()).collect()
    }

    /// Probabilities of every label of every head.
    pub fn predict(&self, x: &Features) -> Vec<Vec<f32>> {
        let mut logits: Vec<Vec<f32>> = self.header.heads.iter().map(|h| h.bias.clone()).collect();
        for (bucket, value) in x {
            let Some(row) = self.rows.get(bucket) else { continue };
            let base = *row as usize * self.width;
            for (h, head) in self.header.heads.iter().enumerate() {
                let off = base + self.offsets[h];
                let scale = head.scale * value;
                for (k, l) in logits[h].iter_mut().enumerate() {
                    *l += f32::from(self.weights[off + k]) * scale;
                }
            }
        }
        logits.into_iter().map(softmax).collect()
    }

    /// Trains on `samples`; `heads` names each head and its labels.
    pub fn train(
        features: FeatureSpec,
        spec: TrainSpec,
        decisions: Decisions,
        heads: &[HeadLabels],
        samples: &[Sample],
        trained_on: String,
    ) -> Self {
        let dense = Dense::train(features.buckets as usize, spec, heads, samples);
        dense.quantize(features, spec, decisions, heads, trained_on)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut bytes = Vec::new();
        self.write(&mut bytes).map_err(|e| Error::Model(format!("cannot encode the model: {e}")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::Model(format!("{}: {e}", dir.display())))?;
        }
        std::fs::write(path, bytes).map_err(|e| Error::Model(format!("cannot write {}: {e}", path.display())))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::Model(format!("cannot read the model file {}: {e} (build it with `whistle-classifier train`)", path.display()))
        })?;
        Self::decode(&bytes).map_err(|e| Error::Model(format!("{}: {e}", path.display())))
    }

    /// The file's bytes: magic, header length and JSON header, row count,
    /// buckets, weights, then an FNV-1a checksum of everything before it.
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut body = Vec::new();
        body.extend_from_slice(MAGIC);
        let header = serde_json::to_vec(&self.header).map_err(std::io::Error::other)?;
        body.extend_from_slice(&(header.len() as u32).to_le_bytes());
        body.extend_from_slice(&header);
        let mut order: Vec<(u32, u32)> = self.rows.iter().map(|(b, r)| (*b, *r)).collect();
        order.sort_unstable();
        body.extend_from_slice(&(order.len() as u32).to_le_bytes());
        for (bucket, _) in &order {
            body.extend_from_slice(&bucket.to_le_bytes());
        }
        for (_, row) in &order {
            let base = *row as usize * self.width;
            body.extend(self.weights[base..base + self.width].iter().map(|w| *w as u8));
        }
        let sum = fnv1a(&[&body]);
        body.extend_from_slice(&sum.to_le_bytes());
        out.write_all(&body)
    }

    /// A model from the bytes of its file; says what is wrong with a file
    /// that is not one.
    pub fn read(bytes: &[u8]) -> Result<Self> {
        Self::decode(bytes).map_err(crate::Error::Model)
    }

    fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        if bytes.len() < MAGIC.len() + 16 || &bytes[..MAGIC.len()] != MAGIC {
            return Err("not a whistle classifier model (wrong magic)".into());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        if fnv1a(&[body]).to_le_bytes() != sum {
            return Err("the model file is corrupt (checksum mismatch)".into());
        }
        let mut r = &body[MAGIC.len()..];
        let u32_at = |r: &mut &[u8]| -> std::result::Result<u32, String> {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(|_| "the model file is truncated".to_owned())?;
            Ok(u32::from_le_bytes(b))
        };
        let hlen = u32_at(&mut r)? as usize;
        if r.len() < hlen {
            return Err("the model file is truncated".into());
        }
        let header: Header = serde_json::from_slice(&r[..hlen]).map_err(|e| format!("bad model header: {e}"))?;
        r = &r[hlen..];
        let n = u32_at(&mut r)? as usize;
        let width: usize = header.heads.iter().map(|h| h.labels.len()).sum();
        if r.len() != n * 4 + n * width {
            return Err(format!("the model file has {} bytes of weights; expected {}", r.len(), n * 4 + n * width));
        }
        let mut rows = HashMap::with_capacity(n);
        for i in 0..n {
            let b = u32::from_le_bytes(r[i * 4..i * 4 + 4].try_into().map_err(|_| "truncated")?);
            rows.insert(b, i as u32);
        }
        let weights = r[n * 4..].iter().map(|b| *b as i8).collect();
        let offsets = header.heads.iter().scan(0, |acc, h| {
            let o = *acc;
            *acc += h.labels.len();
            Some(o)
        });
        let offsets = offsets.collect();
        Ok(Model { header, rows, weights, width, offsets })
    }
}

pub fn softmax(mut z: Vec<f32>) -> Vec<f32> {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in &mut z {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in &mut z {
        *v /= sum;
    }
    z
}

/// A small deterministic generator for the shuffle (xorshift64*).
struct Shuffle(u64);

impl Shuffle {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Full-precision weights while training.
struct Dense {
    width: usize,
    offsets: Vec<usize>,
    sizes: Vec<usize>,
    w: Vec<f32>,
    bias: Vec<Vec<f32>>,
    seen: Vec<bool>,
}

impl Dense {
    fn train(buckets: usize, spec: TrainSpec, heads: &[HeadLabels], samples: &[Sample]) -> Self {
        let sizes: Vec<usize> = heads.iter().map(|(_, l)| l.len()).collect();
        let width: usize = sizes.iter().sum();
        let offsets: Vec<usize> = sizes
            .iter()
            .scan(0, |a, s| {
                let o = *a;
                *a += s;
                Some(o)
            })
            .collect();
        let mut d = Dense {
            width,
            offsets,
            sizes: sizes.clone(),
            w: vec![0.0; buckets * width],
            bias: sizes.iter().map(|s| vec![0.0; *s]).collect(),
            seen: vec![false; buckets],
        };
        let mut g2 = vec![1e-6f32; buckets * width];
        let mut b2: Vec<Vec<f32>> = sizes.iter().map(|s| vec![1e-6; *s]).collect();
        let mut order: Vec<usize> = (0..samples.len()).collect();
        let mut rng = Shuffle(spec.seed | 1);
        for s in samples {
            for (b, _) in &s.features {
                d.seen[*b as usize] = true;
            }
        }
        for _ in 0..spec.epochs {
            rng.shuffle(&mut order);
            for &i in &order {
                let s = &samples[i];
                for h in 0..sizes.len() {
                    let off = d.offsets[h];
                    let mut z = d.bias[h].clone();
                    for (b, x) in &s.features {
                        let base = *b as usize * width + off;
                        for (k, zk) in z.iter_mut().enumerate() {
                            *zk += d.w[base + k] * x;
                        }
                    }
                    let p = softmax(z);
                    for k in 0..sizes[h] {
                        let g = p[k] - if s.labels[h] == k { 1.0 } else { 0.0 };
                        b2[h][k] += g * g;
                        d.bias[h][k] -= spec.learning_rate * g / b2[h][k].sqrt();
                        for (b, x) in &s.features {
                            let j = *b as usize * width + off + k;
                            let grad = g * x + spec.l2 * d.w[j];
                            g2[j] += grad * grad;
                            d.w[j] -= spec.learning_rate * grad / g2[j].sqrt();
                        }
                    }
                }
            }
        }
        d
    }

    fn quantize(self, features: FeatureSpec, train: TrainSpec, decisions: Decisions, heads: &[HeadLabels], trained_on: String) -> Model {
        let scales: Vec<f32> = (0..self.sizes.len())
            .map(|h| {
                let mut max = 0f32;
                for (b, seen) in self.seen.iter().enumerate() {
                    if *seen {
                        let base = b * self.width + self.offsets[h];
                        for k in 0..self.sizes[h] {
                            max = max.max(self.w[base + k].abs());
                        }
                    }
                }
                if max > 0.0 { max / 127.0 } else { 1.0 }
            })
            .collect();
        let mut rows = HashMap::new();
        let mut weights = Vec::new();
        for (b, seen) in self.seen.iter().enumerate() {
            if !*seen {
                continue;
            }
            let mut row = Vec::with_capacity(self.width);
            for ((offset, size), scale) in self.offsets.iter().zip(&self.sizes).zip(&scales) {
                let base = b * self.width + offset;
                row.extend(self.w[base..base + size].iter().map(|w| (w / scale).round().clamp(-127.0, 127.0) as i8));
            }
            if row.iter().any(|w| *w != 0) {
                rows.insert(b as u32, (weights.len() / self.width) as u32);
                weights.extend(row);
            }
        }
        let header = Header {
            features,
            train,
            decisions,
            heads: heads
                .iter()
                .enumerate()
                .map(|(h, (name, labels))| HeadHeader {
                    name: (*name).to_owned(),
                    labels: labels.clone(),
                    bias: self.bias[h].clone(),
                    scale: scales[h],
                })
                .collect(),
            trained_on,
        };
        Model { header, rows, weights, width: self.width, offsets: self.offsets }
    }
}

/// Multinomial naive Bayes over the same features: the alternative the
/// logistic regression was measured against (`whistle-classifier train
/// --compare`).
pub struct NaiveBayes {
    heads: Vec<NbHead>,
}

struct NbHead {
    prior: Vec<f32>,
    /// Per label: bucket -> log probability; `unseen` for the rest.
    log_p: Vec<HashMap<u32, f32>>,
    unseen: Vec<f32>,
}

impl NaiveBayes {
    pub fn train(heads: &[HeadLabels], samples: &[Sample], alpha: f32, buckets: u32) -> Self {
        let heads = heads
            .iter()
            .enumerate()
            .map(|(h, (_, labels))| {
                let k = labels.len();
                let mut counts: Vec<HashMap<u32, f32>> = vec![HashMap::new(); k];
                let mut totals = vec![0f32; k];
                let mut docs = vec![0f32; k];
                for s in samples {
                    let y = s.labels[h];
                    docs[y] += 1.0;
                    for (b, x) in &s.features {
                        *counts[y].entry(*b).or_insert(0.0) += x;
                        totals[y] += x;
                    }
                }
                let n: f32 = docs.iter().sum();
                let v = buckets as f32;
                NbHead {
                    prior: docs.iter().map(|d| ((d + 1.0) / (n + k as f32)).ln()).collect(),
                    unseen: totals.iter().map(|t| (alpha / (t + alpha * v)).ln()).collect(),
                    log_p: counts
                        .into_iter()
                        .zip(&totals)
                        .map(|(c, t)| c.into_iter().map(|(b, x)| (b, ((x + alpha) / (t + alpha * v)).ln())).collect())
                        .collect(),
                }
            })
            .collect();
        NaiveBayes { heads }
    }

    pub fn predict(&self, x: &Features) -> Vec<Vec<f32>> {
        self.heads
            .iter()
            .map(|h| {
                let z = (0..h.prior.len())
                    .map(|k| h.prior[k] + x.iter().map(|(b, v)| v * h.log_p[k].get(b).copied().unwrap_or(h.unseen[k])).sum::<f32>())
                    .collect();
                softmax(z)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::extract;

    fn toy() -> (FeatureSpec, Vec<HeadLabels<'static>>, Vec<Sample>) {
        let spec = FeatureSpec { buckets: 1 << 12, ..FeatureSpec::default() };
        let heads = vec![("category", vec!["water".to_owned(), "noise".to_owned()])];
        let data =
            [("楼上漏水", 0), ("水管漏水了", 0), ("no water at all", 0), ("楼下噪音太大", 1), ("loud music at night", 1), ("施工噪音", 1)];
        let samples = data.iter().map(|(t, y)| Sample { features: extract(&spec, t, "", &[]), labels: vec![*y] }).collect();
        (spec, heads, samples)
    }

    #[test]
    fn learns_and_round_trips_through_its_file() {
        let (spec, heads, samples) = toy();
        let model = Model::train(spec, TrainSpec::default(), Decisions::default(), &heads, &samples, "toy".into());
        let x = extract(&spec, "厨房漏水", "", &[]);
        let p = model.predict(&x);
        assert!(p[0][0] > 0.5, "{p:?}");
        let mut bytes = Vec::new();
        model.write(&mut bytes).unwrap();
        let again = Model::read(&bytes).unwrap();
        assert_eq!(again.predict(&x), p);
        let mut again_bytes = Vec::new();
        Model::train(spec, TrainSpec::default(), Decisions::default(), &heads, &samples, "toy".into()).write(&mut again_bytes).unwrap();
        assert_eq!(bytes, again_bytes, "training is deterministic");
        let nb = NaiveBayes::train(&heads, &samples, 0.1, spec.buckets);
        assert!(nb.predict(&x)[0][0] > 0.5);
    }

    #[test]
    fn a_model_file_from_before_the_urgent_recall_goal_still_loads() {
        let (spec, heads, samples) = toy();
        let mut bytes = Vec::new();
        Model::train(spec, TrainSpec::default(), Decisions::default(), &heads, &samples, "toy".into()).write(&mut bytes).unwrap();
        // The same file as an older release wrote it: no `urgent_recall`
        // in the header, its length and the checksum to match.
        let hlen = u32::from_le_bytes(bytes[MAGIC.len()..MAGIC.len() + 4].try_into().unwrap()) as usize;
        let start = MAGIC.len() + 4;
        let header = String::from_utf8(bytes[start..start + hlen].to_vec()).unwrap();
        let old_header = header.replace(",\"urgent_recall\":0.95", "");
        assert_ne!(old_header, header, "{header}");
        let mut old = MAGIC.to_vec();
        old.extend_from_slice(&(old_header.len() as u32).to_le_bytes());
        old.extend_from_slice(old_header.as_bytes());
        old.extend_from_slice(&bytes[start + hlen..bytes.len() - 8]);
        let sum = fnv1a(&[&old]);
        old.extend_from_slice(&sum.to_le_bytes());
        let model = Model::read(&old).unwrap();
        assert_eq!(model.header.train.urgent_recall, 0.95);
    }

    #[test]
    fn a_damaged_file_is_refused_with_the_reason() {
        let (spec, heads, samples) = toy();
        let mut bytes = Vec::new();
        Model::train(spec, TrainSpec::default(), Decisions::default(), &heads, &samples, "toy".into()).write(&mut bytes).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        assert!(Model::read(&bytes).unwrap_err().to_string().contains("checksum"));
        assert!(Model::read(b"hello").unwrap_err().to_string().contains("magic"));
    }
}
