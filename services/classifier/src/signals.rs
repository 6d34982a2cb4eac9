//! The city's signals read from the text (`[[classification.signals]]`):
//! danger that makes a request urgent whatever the model says, and the
//! whistle cues the seeds name (reported again, the whole building,
//! dragged on for months, passed between departments).

use whistle_domain::city::{Classification, Season, Signal, SignalEffect};

use crate::text::WordList;

/// Which word of which signal: (signal index, group index; `usize::MAX`
/// for the `any` list).
type Tag = (usize, usize);

#[derive(Clone)]
pub struct Signals {
    signals: Vec<Signal>,
    words: WordList<Tag>,
    /// Each signal's `unless` phrases, tagged with the signal's index.
    unless: WordList<usize>,
    seasons: Vec<(String, Season, WordList<()>)>,
}

/// A signal that fired, with the word that showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub name: String,
    pub effect: SignalEffect,
    pub word: String,
}

impl Signals {
    pub fn new(c: &Classification) -> Self {
        let mut words = Vec::new();
        for (i, s) in c.signals.iter().enumerate() {
            words.extend(s.any.iter().map(|w| ((i, usize::MAX), w.clone())));
            for (g, group) in s.all.iter().enumerate() {
                words.extend(group.iter().map(|w| ((i, g), w.clone())));
            }
        }
        let seasons = c
            .seasons
            .iter()
            .map(|(name, s)| (name.clone(), s.clone(), WordList::new(s.words.iter().map(|w| ((), w.clone())), false)))
            .collect();
        let unless = WordList::new(c.signals.iter().enumerate().flat_map(|(i, s)| s.unless.iter().map(move |w| (i, w.clone()))), false);
        Signals { signals: c.signals.clone(), words: WordList::new(words, false), unless, seasons }
    }

    /// The signals `text` (normalized) shows. `arrived` is the (month, day)
    /// the request arrived, if known; a date the text names comes first.
    pub fn fire(&self, text: &str, arrived: Option<(u8, u8)>) -> Vec<Fired> {
        let unless = self.unless.find(text);
        // A word inside one of its signal's `unless` phrases does not count.
        let hits: Vec<_> = self
            .words
            .find(text)
            .into_iter()
            .filter(|h| !unless.iter().any(|u| *u.tag == h.tag.0 && u.start <= h.start && h.end <= u.end))
            .collect();
        let named = date_in(text);
        let mut out = Vec::new();
        for (i, s) in self.signals.iter().enumerate() {
            let mine: Vec<_> = hits.iter().filter(|h| h.tag.0 == i).collect();
            let any = mine.iter().find(|h| h.tag.1 == usize::MAX);
            let all = !s.all.is_empty() && (0..s.all.len()).all(|g| mine.iter().any(|h| h.tag.1 == g));
            let word = match (any, all) {
                (Some(h), _) => h.word.to_owned(),
                (None, true) => mine.iter().map(|h| h.word).collect::<Vec<_>>().join("+"),
                (None, false) => continue,
            };
            if let Some(season) = &s.season
                && !self.in_season(season, text, named, arrived)
            {
                continue;
            }
            out.push(Fired { name: s.name.clone(), effect: s.effect, word });
        }
        out
    }

    fn in_season(&self, season: &str, text: &str, named: Option<(u8, Option<u8>)>, arrived: Option<(u8, u8)>) -> bool {
        let Some((_, s, words)) = self.seasons.iter().find(|(n, _, _)| n == season) else { return false };
        match (named, arrived) {
            (Some((m, Some(d))), _) => s.contains(m, d),
            // A month without a day: in season if its whole month is.
            (Some((m, None)), _) if s.contains(m, 1) && s.contains(m, 28) => true,
            (Some((m, None)), _) if !s.contains(m, 1) && !s.contains(m, 28) => false,
            // Half in season (November): the words decide.
            (Some((_, None)), _) => !words.find(text).is_empty(),
            (None, Some((m, d))) => s.contains(m, d),
            (None, None) => !words.find(text).is_empty(),
        }
    }
}

const ZH_NUMBERS: [&str; 12] = ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "十一", "十二"];
const EN_MONTHS: [&str; 12] =
    ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"];
const RU_MONTHS: [&str; 12] = ["январ", "феврал", "март", "апрел", "ма", "июн", "июл", "август", "сентябр", "октябр", "ноябр", "декабр"];

/// The month a text names ("十月", "1月份", "in January", "в январе",
/// "12월"), with the day when it says one ("11月4日", "下旬", "early
/// November", "в начале ноября"), if it names one. "三个月" (three
/// months) is not a month.
pub fn date_in(text: &str) -> Option<(u8, Option<u8>)> {
    let month = month_in(text)?;
    let (m, at) = month;
    let rest = &text[at..];
    let chars: Vec<char> = rest.chars().take(8).collect();
    let digits: String = chars.iter().skip(1).take_while(|c| c.is_ascii_digit()).collect();
    if let Ok(d) = digits.parse::<u8>()
        && (1..=31).contains(&d)
    {
        return Some((m, Some(d)));
    }
    let near: String = chars.iter().collect();
    let before: String = text[..at].chars().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
    let part = [
        (["上旬", "初", "月初", "초"].as_slice(), 5),
        (["中旬", "中"].as_slice(), 15),
        (["下旬", "底", "末", "月底", "말"].as_slice(), 25),
    ];
    let after = near[near.char_indices().nth(1).map_or(near.len(), |(i, _)| i)..].trim_start();
    for (words, day) in part {
        if words.iter().any(|w| after.starts_with(w)) {
            return Some((m, Some(day)));
        }
    }
    for (words, day) in [
        (["early", "beginning of", "начале", "начало"].as_slice(), 5),
        (["mid", "middle of", "середине"].as_slice(), 15),
        (["late", "end of", "конце", "конец"].as_slice(), 25),
    ] {
        if words.iter().any(|w| before.trim_end().ends_with(w) || before.trim_end().trim_end_matches('-').ends_with(w)) {
            return Some((m, Some(day)));
        }
    }
    Some((m, None))
}

/// The month a text names and where its name ends (the byte after 月, or
/// after the month's word).
fn month_in(text: &str) -> Option<(u8, usize)> {
    // 十二月 / 12月 / 12월 and their kin: a number right before 月 or 월.
    for (at, c) in text.char_indices() {
        if c != '月' && c != '월' {
            continue;
        }
        let before: String = text[..at].chars().rev().take_while(|c| c.is_ascii_digit() || "一二三四五六七八九十".contains(*c)).collect();
        let number: String = before.chars().rev().collect();
        if number.is_empty() {
            continue;
        }
        let n = number.parse::<u8>().ok().or_else(|| ZH_NUMBERS.iter().rposition(|z| *z == number).map(|p| p as u8 + 1));
        if let Some(n) = n.filter(|n| (1..=12).contains(n)) {
            return Some((n, at));
        }
    }
    let mut offset = 0;
    for word in text.split(|c: char| !c.is_alphabetic()) {
        let start = text[offset..].find(word).map_or(offset, |i| offset + i);
        offset = start + word.len();
        if word.is_empty() {
            continue;
        }
        if let Some(p) = EN_MONTHS.iter().position(|m| *m == word) {
            // "may" is also a verb: only with a capital in the source, which
            // normalization lost, so leave it out.
            if p != 4 {
                return Some((p as u8 + 1, start));
            }
        }
        if word.chars().next().is_some_and(|c| ('\u{0400}'..='\u{04FF}').contains(&c))
            && let Some(p) = RU_MONTHS.iter().position(|m| word.starts_with(m) && p_len_ok(m, word))
        {
            return Some((p as u8 + 1, start));
        }
    }
    None
}

/// Russian month stems take short endings only ("январе", "января"); "ма"
/// is May only as "май", "мая", "мае".
fn p_len_ok(stem: &str, word: &str) -> bool {
    if stem == "ма" {
        return matches!(word, "май" | "мая" | "мае");
    }
    word.chars().count() <= stem.chars().count() + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::normalize;

    #[test]
    fn dates_named_in_five_languages() {
        for (t, d) in [
            ("现在都十月了暖气还没来", Some((10, None))),
            ("1月份家里冷得不行", Some((1, None))),
            ("已经三个月了没人管", None),
            ("it is January and the radiators are cold", Some((1, None))),
            ("в январе не было отопления", Some((1, None))),
            ("12월인데 난방이 안 돼요", Some((12, None))),
            ("10月なのに寒い", Some((10, None))),
            ("we may call again", None),
            ("今天11月4日，天冷了", Some((11, Some(4)))),
            ("十一月下旬了还不热", Some((11, Some(25)))),
            ("сейчас начало ноября", Some((11, Some(5)))),
            ("it's late November", Some((11, Some(25)))),
            ("11월 말인데", Some((11, Some(25)))),
        ] {
            assert_eq!(date_in(&normalize(t)), d, "{t}");
        }
    }

    fn rules() -> Classification {
        let text = r#"
            categories = []
            [seasons.winter]
            from = "11-15"
            until = "03-15"
            words = ["冬天", "winter", "零下"]
            [[signals]]
            name = "gas-smell"
            effect = "urgent"
            any = ["煤气味", "smell of gas", "запах газ*"]
            [[signals]]
            name = "fire"
            effect = "urgent"
            any = ["着火了"]
            unless = ["打不着火了", "点不着火了"]
            [[signals]]
            name = "cold-vulnerable"
            effect = "urgent"
            all = [["暖气不热", "no heating"], ["老人", "elderly"]]
            season = "winter"
        "#;
        toml::from_str(text).unwrap()
    }

    #[test]
    fn danger_in_passing_and_cold_only_in_winter() {
        let s = Signals::new(&rules());
        let fired = |t: &str, m| s.fire(&normalize(t), m).into_iter().map(|f| f.name).collect::<Vec<_>>();
        assert_eq!(fired("物业费太贵了，对了楼道里还有股煤气味", None), ["gas-smell"]);
        assert_eq!(fired("Чувствуется запах газа в подъезде", None), ["gas-smell"]);
        assert_eq!(fired("废品站着火了，黑烟滚滚", None), ["fire"]);
        assert!(fired("燃气灶打不着火了，一直咔咔响", None).is_empty(), "a word inside an unless phrase does not count");
        assert_eq!(fired("家里暖气不热，老人冻得受不了", Some((1, 10))), ["cold-vulnerable"]);
        assert!(fired("家里暖气不热，老人冻得受不了", Some((10, 20))).is_empty(), "October is not the season");
        assert!(fired("家里暖气不热，老人冻得受不了", Some((11, 10))).is_empty(), "the season starts on 15 November");
        assert!(fired("十月了家里暖气不热，老人有意见", Some((1, 10))).is_empty(), "the month the text names wins");
        assert!(fired("11月4日了家里暖气不热，老人冻得受不了", None).is_empty(), "before the season");
        assert_eq!(fired("11月20日了家里暖气不热，老人冻得受不了", None), ["cold-vulnerable"]);
        assert_eq!(fired("冬天了家里暖气不热，老人受不了", None), ["cold-vulnerable"], "no date: the season's words");
        assert!(fired("家里暖气不热，老人受不了", None).is_empty(), "no date, no season word: not known");
    }
}
