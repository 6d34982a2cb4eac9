//! Measuring a classifier on labeled requests: accuracy, per-class
//! precision and recall, confusion matrices, per language.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Counts of (truth, prediction) over one label set.
#[derive(Debug, Clone)]
pub struct Confusion {
    labels: Vec<String>,
    m: Vec<Vec<u32>>,
}

impl Confusion {
    pub fn new(labels: &[String]) -> Self {
        Confusion { labels: labels.to_vec(), m: vec![vec![0; labels.len()]; labels.len()] }
    }

    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.m[truth][predicted] += 1;
    }

    pub fn total(&self) -> u32 {
        self.m.iter().flatten().sum()
    }

    pub fn correct(&self) -> u32 {
        (0..self.labels.len()).map(|i| self.m[i][i]).sum()
    }

    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }

    pub fn recall(&self, k: usize) -> f64 {
        ratio(self.m[k][k], self.m[k].iter().sum())
    }

    pub fn precision(&self, k: usize) -> f64 {
        ratio(self.m[k][k], self.m.iter().map(|r| r[k]).sum())
    }

    pub fn index(&self, label: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == label)
    }

    /// Per-class precision, recall and support, then the matrix (rows: the
    /// truth, columns: the prediction, by the labels' first letters).
    pub fn report(&self, title: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{title}: accuracy {:.1}% ({} of {})", 100.0 * self.accuracy(), self.correct(), self.total());
        let _ = writeln!(out, "  {:<16} {:>9} {:>7} {:>7}", "class", "precision", "recall", "support");
        for (k, l) in self.labels.iter().enumerate() {
            let support: u32 = self.m[k].iter().sum();
            let _ = writeln!(out, "  {:<16} {:>8.1}% {:>6.1}% {:>7}", l, 100.0 * self.precision(k), 100.0 * self.recall(k), support);
        }
        let short: Vec<String> = self.labels.iter().map(|l| abbreviate(l)).collect();
        let _ = write!(out, "  confusion (row = truth, column = predicted)\n  {:<6}", "");
        for s in &short {
            let _ = write!(out, "{s:>5}");
        }
        out.push('\n');
        for (k, row) in self.m.iter().enumerate() {
            let _ = write!(out, "  {:<6}", short[k]);
            for v in row {
                if *v == 0 {
                    let _ = write!(out, "{:>5}", ".");
                } else {
                    let _ = write!(out, "{v:>5}");
                }
            }
            out.push('\n');
        }
        out
    }
}

fn abbreviate(l: &str) -> String {
    let parts: Vec<&str> = l.split('_').collect();
    if parts.len() > 1 { parts.iter().filter_map(|p| p.chars().next()).collect() } else { l.chars().take(4).collect() }
}

pub fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 { 0.0 } else { f64::from(a) / f64::from(b) }
}

/// Accuracy per group (language), per head.
#[derive(Debug, Default)]
pub struct ByGroup {
    /// group -> head -> (correct, total)
    cells: BTreeMap<String, BTreeMap<String, (u32, u32)>>,
}

impl ByGroup {
    pub fn add(&mut self, group: &str, head: &str, correct: bool) {
        let cell = self.cells.entry(group.to_owned()).or_default().entry(head.to_owned()).or_default();
        cell.0 += u32::from(correct);
        cell.1 += 1;
    }

    pub fn accuracy(&self, group: &str, head: &str) -> f64 {
        self.cells.get(group).and_then(|h| h.get(head)).map_or(0.0, |(c, t)| ratio(*c, *t))
    }

    pub fn groups(&self) -> impl Iterator<Item = &String> {
        self.cells.keys()
    }

    pub fn count(&self, group: &str) -> u32 {
        self.cells.get(group).and_then(|h| h.values().next()).map_or(0, |(_, t)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_recall_and_accuracy() {
        let labels = vec!["water".to_owned(), "noise".to_owned()];
        let mut c = Confusion::new(&labels);
        for (t, p) in [(0, 0), (0, 0), (0, 1), (1, 1)] {
            c.add(t, p);
        }
        assert_eq!(c.accuracy(), 0.75);
        assert!((c.recall(0) - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(c.precision(1), 0.5);
        assert!(c.report("dev").contains("accuracy 75.0% (3 of 4)"));
    }
}
