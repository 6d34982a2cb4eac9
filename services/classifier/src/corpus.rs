//! The labeled corpus (`services/classifier/corpus/*.jsonl`, see its
//! `GUIDE.md`) and its fixed split: the hash of each id puts it in train
//! (70%), dev (15%) or test (15%), whatever else is in the files.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use whistle_domain::{Category, Language, Urgency, WhistleLevel};

use crate::features::fnv1a;
use crate::{Error, Result};

/// One labeled request.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub id: String,
    pub text: String,
    pub address: String,
    pub language: Language,
    pub category: Category,
    pub urgency: Urgency,
    pub whistle: WhistleLevel,
    pub note: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: String,
    text: String,
    #[serde(default)]
    address: String,
    language: String,
    category: String,
    urgency: String,
    whistle: String,
    #[serde(default)]
    note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    Train,
    Dev,
    Test,
}

impl Split {
    pub fn of(id: &str) -> Split {
        match fnv1a(&[b"split", id.as_bytes()]) % 100 {
            0..70 => Split::Train,
            70..85 => Split::Dev,
            _ => Split::Test,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

impl Example {
    pub fn split(&self) -> Split {
        Split::of(&self.id)
    }
}

/// The corpus files of a directory, in name order.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = std::fs::read_dir(dir).map_err(|e| Error::Corpus(format!("{}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> =
        read.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "jsonl")).collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Corpus(format!("{}: no .jsonl files", dir.display())));
    }
    Ok(files)
}

/// Every example of the corpus; a bad line is an error naming file and line.
pub fn load(dir: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for file in files(dir)? {
        let text = std::fs::read_to_string(&file).map_err(|e| Error::Corpus(format!("{}: {e}", file.display())))?;
        for (i, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            let at = || format!("{}:{}", file.display(), i + 1);
            let line: Line = serde_json::from_str(raw).map_err(|e| Error::Corpus(format!("{}: {e}", at())))?;
            let bad = |e: whistle_domain::Error| Error::Corpus(format!("{}: {e}", at()));
            let example = Example {
                language: Language::parse(&line.language).map_err(bad)?,
                category: Category::parse(&line.category).map_err(bad)?,
                urgency: Urgency::parse(&line.urgency).map_err(bad)?,
                whistle: WhistleLevel::parse(&line.whistle).map_err(bad)?,
                id: line.id,
                text: line.text,
                address: line.address,
                note: line.note,
            };
            if example.text.trim().is_empty() {
                return Err(Error::Corpus(format!("{}: empty text", at())));
            }
            if !ids.insert(example.id.clone()) {
                return Err(Error::Corpus(format!("{}: id {} appears twice", at(), example.id)));
            }
            out.push(example);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_fixed_by_the_id() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("zh-a-{i:04}")).collect();
        let train = ids.iter().filter(|i| Split::of(i) == Split::Train).count();
        let test = ids.iter().filter(|i| Split::of(i) == Split::Test).count();
        assert!((6700..7300).contains(&train), "{train}");
        assert!((1300..1700).contains(&test), "{test}");
        assert_eq!(Split::of("ko-a-0007"), Split::of("ko-a-0007"));
    }
}
