//! A citizen's request as it arrives, validated: every constructor refuses
//! bad input with the field and the reason.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

use crate::{Category, Error, Result};

/// Longest request text accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;

/// A value that must never appear in logs or traces: a citizen's name or
/// phone, a password, a token, a secret. `Debug` and `Display` print a mask;
/// serde keeps the value (the ticket record and the config need it), except
/// inside [`masked`], where it is written as the mask too.
#[derive(Clone, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(transparent)]
pub struct Sensitive<T>(T);

thread_local! {
    static MASKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every [`Sensitive`] it serializes written as `<redacted>`
/// (to print a config, say).
pub fn masked<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            MASKING.with(|m| m.set(self.0));
        }
    }
    let _reset = Reset(MASKING.with(|m| m.replace(true)));
    f()
}

impl<T: Serialize> Serialize for Sensitive<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if MASKING.with(|m| m.get()) { s.serialize_str("<redacted>") } else { self.0.serialize(s) }
    }
}

impl<T> Sensitive<T> {
    pub fn new(value: T) -> Self {
        Sensitive(value)
    }

    /// The clear value, for the few places that must send it (the citizen's
    /// own SMS, a unit whose category needs contact).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Phone,
    Wechat,
    Web,
    App,
    Email,
    Letter,
    QrCode,
    Grid,
    Media,
    Reception,
    External,
}

impl Channel {
    pub const ALL: [Channel; 11] = [
        Channel::Phone,
        Channel::Wechat,
        Channel::Web,
        Channel::App,
        Channel::Email,
        Channel::Letter,
        Channel::QrCode,
        Channel::Grid,
        Channel::Media,
        Channel::Reception,
        Channel::External,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Phone => "phone",
            Channel::Wechat => "wechat",
            Channel::Web => "web",
            Channel::App => "app",
            Channel::Email => "email",
            Channel::Letter => "letter",
            Channel::QrCode => "qr_code",
            Channel::Grid => "grid",
            Channel::Media => "media",
            Channel::Reception => "reception",
            Channel::External => "external",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| {
            let known: Vec<_> = Channel::ALL.iter().map(|c| c.as_str()).collect();
            Error::invalid("channel", format!("unknown channel {s:?}; expected one of {}", known.join(", ")))
        })
    }
}

/// The five languages the hotline serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    #[default]
    Zh,
    En,
    Ja,
    Ko,
    Ru,
}

impl Language {
    pub const ALL: [Language; 5] = [Language::Zh, Language::En, Language::Ja, Language::Ko, Language::Ru];

    pub fn as_str(self) -> &'static str {
        match self {
            Language::Zh => "zh",
            Language::En => "en",
            Language::Ja => "ja",
            Language::Ko => "ko",
            Language::Ru => "ru",
        }
    }

    /// The language a text is written in, among the five the hotline
    /// serves, or `None` when it has no letters to tell by. The five are
    /// told apart by their scripts: Hangul is Korean, kana Japanese (kanji
    /// alone reads as Chinese), Cyrillic Russian, Latin English, Han Chinese;
    /// a Han character weighs as much as a Latin word, so Chinese with an
    /// English word in it ("我家的heating又坏了") stays Chinese, and a few
    /// Chinese place names in Korean or Russian text do not make it Chinese.
    pub fn detect(text: &str) -> Option<Language> {
        #[derive(PartialEq)]
        enum Word {
            None,
            Latin,
            Cyrillic,
        }
        let (mut hangul, mut kana, mut han, mut cyrillic_words, mut latin_words) = (0usize, 0usize, 0usize, 0usize, 0usize);
        let mut word = Word::None;
        for c in text.chars() {
            let now = if c.is_ascii_alphabetic() || ('\u{00C0}'..='\u{024F}').contains(&c) {
                Word::Latin
            } else if ('\u{0400}'..='\u{04FF}').contains(&c) {
                Word::Cyrillic
            } else {
                Word::None
            };
            if now != word {
                match now {
                    Word::Latin => latin_words += 1,
                    Word::Cyrillic => cyrillic_words += 1,
                    Word::None => {}
                }
            }
            word = now;
            match c {
                '\u{AC00}'..='\u{D7A3}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}' => hangul += 1,
                '\u{3041}'..='\u{309F}' | '\u{30A0}'..='\u{30FF}' | '\u{31F0}'..='\u{31FF}' | '\u{FF66}'..='\u{FF9F}' => kana += 1,
                '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}' => han += 1,
                _ => {}
            }
        }
        if hangul > 0 && hangul * 2 >= kana + han / 2 {
            return Some(Language::Ko);
        }
        if kana > 0 && kana * 10 >= han {
            return Some(Language::Ja);
        }
        [(Language::Zh, han), (Language::Ru, cyrillic_words), (Language::En, latin_words)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .max_by_key(|(_, n)| *n)
            .map(|(l, _)| l)
    }

    /// Empty means Chinese, the default.
    pub fn parse(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Ok(Language::Zh);
        }
        Language::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| Error::invalid("language", format!("unsupported language {s:?}; expected zh, en, ja, ko or ru")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    lat: f64,
    lon: f64,
}

impl GeoPoint {
    pub fn parse(lat: f64, lon: f64) -> Result<Self> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(Error::invalid("lat", format!("latitude {lat} is outside -90..90")));
        }
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(Error::invalid("lon", format!("longitude {lon} is outside -180..180")));
        }
        Ok(GeoPoint { lat, lon })
    }

    pub fn lat(&self) -> f64 {
        self.lat
    }

    pub fn lon(&self) -> f64 {
        self.lon
    }
}

/// Where the matter is: an address, a point, or both.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Location {
    pub address: String,
    pub point: Option<GeoPoint>,
}

impl Location {
    /// Latitude and longitude come together or not at all.
    pub fn parse(address: &str, lat: Option<f64>, lon: Option<f64>) -> Result<Self> {
        let point = match (lat, lon) {
            (Some(lat), Some(lon)) => Some(GeoPoint::parse(lat, lon)?),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::invalid("lon", "latitude given without longitude"));
            }
            (None, Some(_)) => {
                return Err(Error::invalid("lat", "longitude given without latitude"));
            }
        };
        let address = address.trim();
        if address.chars().count() > 500 {
            return Err(Error::invalid("address", "longer than 500 characters"));
        }
        Ok(Location { address: address.to_owned(), point })
    }
}

/// A phone number: digits with optional leading `+`, spaces and hyphens
/// allowed, 7 to 15 digits (E.164 is at most 15).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhoneNumber(Sensitive<String>);

impl PhoneNumber {
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let body = s.strip_prefix('+').unwrap_or(s);
        let mut digits = String::with_capacity(body.len() + 1);
        if s.starts_with('+') {
            digits.push('+');
        }
        for c in body.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' => {}
                _ => {
                    return Err(Error::invalid("citizen_phone", "may hold only digits, spaces, hyphens and a leading +"));
                }
            }
        }
        let count = digits.trim_start_matches('+').len();
        if !(7..=15).contains(&count) {
            return Err(Error::invalid("citizen_phone", format!("has {count} digits; expected 7 to 15")));
        }
        Ok(PhoneNumber(Sensitive(digits)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The number with all but the first three and last four digits hidden,
    /// as a unit that does not need contact sees it.
    pub fn masked(&self) -> String {
        let d: Vec<char> = self.0.expose().chars().collect();
        if d.len() <= 7 {
            return "*".repeat(d.len());
        }
        let head: String = d[..3].iter().collect();
        let tail: String = d[d.len() - 4..].iter().collect();
        format!("{head}{}{tail}", "*".repeat(d.len() - 7))
    }
}

/// How to reach the citizen. Every part is optional (anonymous requests are
/// allowed) and sensitive.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Contact {
    pub name: Option<Sensitive<String>>,
    pub phone: Option<PhoneNumber>,
    pub email: Option<Sensitive<String>>,
}

impl Contact {
    pub fn parse(name: &str, phone: &str, email: &str) -> Result<Self> {
        let name = name.trim();
        if name.chars().count() > 100 {
            return Err(Error::invalid("citizen_name", "longer than 100 characters"));
        }
        let email = email.trim();
        if !email.is_empty() {
            let ok = email.len() <= 254
                && email.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.'))
                && !email.chars().any(char::is_whitespace);
            if !ok {
                return Err(Error::invalid("citizen_email", "is not an email address"));
            }
        }
        Ok(Contact {
            name: (!name.is_empty()).then(|| Sensitive::new(name.to_owned())),
            phone: if phone.trim().is_empty() { None } else { Some(PhoneNumber::parse(phone)?) },
            email: (!email.is_empty()).then(|| Sensitive::new(email.to_owned())),
        })
    }
}

/// A request's fields as they arrive (gRPC, the intake topic's JSON, an
/// event), before validation. Deliberately not `Debug`: it holds the
/// citizen's name and phone in clear.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFields {
    pub channel: String,
    #[serde(default)]
    pub external_id: String,
    pub text: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
    #[serde(default)]
    pub citizen_name: String,
    #[serde(default)]
    pub citizen_phone: String,
    #[serde(default)]
    pub citizen_email: String,
    #[serde(default)]
    pub language: String,
    /// The category the citizen chose (an Open311 `service_code`), if any.
    #[serde(default)]
    pub service_code: String,
    /// The chosen service's extra fields (Open311 `attribute[CODE]`).
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub media_url: String,
}

impl RequestFields {
    /// Validates every field; the error names the first bad one.
    pub fn validate(&self) -> Result<Request> {
        let location = Location::parse(&self.address, self.lat, self.lon)?;
        let contact = Contact::parse(&self.citizen_name, &self.citizen_phone, &self.citizen_email)?;
        let mut request = Request::parse(&self.channel, &self.external_id, &self.text, location, contact, &self.language)?;
        request.service = match self.service_code.trim() {
            "" => None,
            code => Some(Category::parse(code).map_err(|_| Error::invalid("service_code", format!("unknown service_code {code:?}")))?),
        };
        request.attributes = parse_attributes(&self.attributes)?;
        request.media_url = parse_media_url(&self.media_url)?;
        Ok(request)
    }
}

/// At most this many attributes, values per attribute, characters a value.
pub const MAX_ATTRIBUTES: usize = 20;
const MAX_VALUE_CHARS: usize = 500;

fn parse_attributes(given: &BTreeMap<String, Vec<String>>) -> Result<BTreeMap<String, Vec<String>>> {
    if given.len() > MAX_ATTRIBUTES {
        return Err(Error::invalid("attribute", format!("{} attributes; at most {MAX_ATTRIBUTES}", given.len())));
    }
    let mut out = BTreeMap::new();
    for (code, values) in given {
        let ok = !code.is_empty() && code.len() <= 64 && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(Error::invalid("attribute", format!("{code:?} is not an attribute code (letters, digits, _ -, at most 64)")));
        }
        let values: Vec<String> = values.iter().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect();
        if values.len() > MAX_ATTRIBUTES || values.iter().any(|v| v.chars().count() > MAX_VALUE_CHARS) {
            return Err(Error::invalid(
                "attribute",
                format!("attribute[{code}]: at most {MAX_ATTRIBUTES} values of {MAX_VALUE_CHARS} characters"),
            ));
        }
        if !values.is_empty() {
            out.insert(code.clone(), values);
        }
    }
    Ok(out)
}

fn parse_media_url(s: &str) -> Result<Option<String>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let ok = (s.starts_with("http://") || s.starts_with("https://")) && s.len() <= 2000 && !s.chars().any(char::is_whitespace);
    if !ok {
        return Err(Error::invalid("media_url", "is not an http(s) URL of at most 2,000 characters"));
    }
    Ok(Some(s.to_owned()))
}

/// A validated request, before it has a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub channel: Channel,
    /// The channel's own id for this request; resubmitting the same
    /// (channel, external id) returns the ticket already issued.
    pub external_id: Option<String>,
    pub text: String,
    pub location: Location,
    pub contact: Contact,
    pub language: Language,
    /// The category the citizen chose, when the channel let them (Open311).
    #[serde(default)]
    pub service: Option<Category>,
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub media_url: Option<String>,
}

impl Request {
    #[allow(clippy::too_many_arguments)]
    pub fn parse(channel: &str, external_id: &str, text: &str, location: Location, contact: Contact, language: &str) -> Result<Self> {
        let channel = Channel::parse(channel)?;
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::invalid("text", "must not be empty"));
        }
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(Error::invalid("text", format!("has {chars} characters; the limit is {MAX_TEXT_CHARS}")));
        }
        let external_id = external_id.trim();
        if external_id.len() > 200 {
            return Err(Error::invalid("external_id", "longer than 200 bytes"));
        }
        Ok(Request {
            channel,
            external_id: (!external_id.is_empty()).then(|| external_id.to_owned()),
            text: text.to_owned(),
            location,
            contact,
            language: if language.trim().is_empty() {
                Language::detect(text).unwrap_or_default()
            } else {
                Language::parse(language.trim())?
            },
            service: None,
            attributes: BTreeMap::new(),
            media_url: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(r: Result<impl fmt::Debug>) -> &'static str {
        r.unwrap_err().field().unwrap()
    }

    #[test]
    fn a_sensitive_value_is_kept_in_records_and_masked_when_printed() {
        let phone = Sensitive::new("13800138000".to_owned());
        assert_eq!(serde_json::to_string(&phone).unwrap(), r#""13800138000""#);
        assert_eq!(masked(|| serde_json::to_string(&phone).unwrap()), r#""<redacted>""#);
        assert_eq!(serde_json::to_string(&phone).unwrap(), r#""13800138000""#, "only inside masked");
        assert_eq!(format!("{phone} {phone:?}"), "<redacted> <redacted>");
    }

    #[test]
    fn bad_requests_name_the_field() {
        let ok_loc = Location::default();
        let ok_contact = Contact::default();
        assert_eq!(field_of(Request::parse("phone", "", "  ", ok_loc.clone(), ok_contact.clone(), "")), "text");
        let long = "漏".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(field_of(Request::parse("phone", "", &long, ok_loc.clone(), ok_contact.clone(), "")), "text");
        assert_eq!(field_of(Request::parse("pigeon", "", "x", ok_loc.clone(), ok_contact.clone(), "")), "channel");
        assert_eq!(field_of(Request::parse("web", "", "x", ok_loc, ok_contact, "fr")), "language");
        assert_eq!(field_of(Location::parse("", Some(91.0), Some(0.0))), "lat");
        assert_eq!(field_of(Location::parse("", Some(1.0), Some(181.0))), "lon");
        assert_eq!(field_of(Location::parse("", Some(f64::NAN), Some(1.0))), "lat");
        assert_eq!(field_of(Location::parse("", Some(1.0), None)), "lon");
        assert_eq!(field_of(Contact::parse("", "call me", "")), "citizen_phone");
        assert_eq!(field_of(Contact::parse("", "123", "")), "citizen_phone");
        assert_eq!(field_of(Contact::parse("", "", "nobody")), "citizen_email");
    }

    #[test]
    fn good_request_is_trimmed_and_defaults_to_chinese() {
        let loc = Location::parse(" 东城区 ", Some(39.9), Some(116.4)).unwrap();
        let contact = Contact::parse("张三", "138-0013-8000", "").unwrap();
        let r = Request::parse("phone", " A-1 ", " 楼道漏水 ", loc, contact, "").unwrap();
        assert_eq!(r.text, "楼道漏水");
        assert_eq!(r.external_id.as_deref(), Some("A-1"));
        assert_eq!(r.language, Language::Zh);
        assert_eq!(r.location.address, "东城区");
        assert_eq!(r.contact.phone.as_ref().unwrap().expose(), "13800138000");
    }

    #[test]
    fn the_language_is_told_by_the_script_when_the_channel_does_not_say() {
        let cases = [
            ("楼上漏水，已经三天了", Some(Language::Zh)),
            ("我家的heating又坏了", Some(Language::Zh)),
            ("樓上漏水，電梯也壞了", Some(Language::Zh)),
            ("No hot water in my flat in Wangjing since Monday", Some(Language::En)),
            ("エレベーターが故障しています。望京の小区です", Some(Language::Ja)),
            ("暖房が全然つきません", Some(Language::Ja)),
            ("왕징 望京 아파트에 난방이 안 돼요 ㅠㅠ", Some(Language::Ko)),
            ("В районе Чаоян (朝阳区) третий день нет воды", Some(Language::Ru)),
            ("12345 !!! ???", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(Language::detect(text), want, "{text}");
        }
        let r = Request::parse("web", "", "엘리베이터에 갇혔어요", Location::default(), Contact::default(), "").unwrap();
        assert_eq!(r.language, Language::Ko);
        let r = Request::parse("web", "", "엘리베이터에 갇혔어요", Location::default(), Contact::default(), "en").unwrap();
        assert_eq!(r.language, Language::En, "what the channel says wins");
    }

    #[test]
    fn sensitive_values_never_print() {
        let contact = Contact::parse("张三", "+86 138 0013 8000", "a@b.cn").unwrap();
        let shown = format!("{contact:?}");
        assert!(!shown.contains("张三") && !shown.contains("13800138000") && !shown.contains("a@b.cn"), "{shown}");
        assert_eq!(contact.phone.unwrap().masked(), "+86*******8000");
        // but the record keeps them
        let json = serde_json::to_string(&Contact::parse("张三", "13800138000", "").unwrap()).unwrap();
        assert!(json.contains("13800138000"));
    }
}
