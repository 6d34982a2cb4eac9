//! Officials' addresses from the city file, and the routes a message takes
//! (SMS, email, webhook) to reach its recipient.

use crate::messages::{Message, Recipient};
use crate::{Error, Result};
use std::collections::BTreeMap;
use whistle_domain::{Language, PlatformId};

/// Where one message goes on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Sms(String),
    Email(String),
    Webhook {
        url: String,
        /// The platform's default webhook (waits out outages) or a
        /// recipient's own (dead-lettered after the last try).
        shared: bool,
    },
}

impl Route {
    pub fn channel(&self) -> &'static str {
        match self {
            Route::Sms(_) => "sms",
            Route::Email(_) => "email",
            Route::Webhook { .. } => "webhook",
        }
    }

    /// Does a transient failure mean the whole gateway is down (wait), not
    /// this recipient (dead-letter)?
    pub(crate) fn shared(&self) -> bool {
        match self {
            Route::Sms(_) | Route::Email(_) => true,
            Route::Webhook { shared, .. } => *shared,
        }
    }
}

/// Officials' addresses from the city file (never logged).
#[derive(Default)]
pub struct Directory {
    pub(crate) webhooks: BTreeMap<String, String>,
    pub(crate) emails: BTreeMap<String, String>,
    pub(crate) phones: BTreeMap<String, String>,
    pub(crate) languages: BTreeMap<String, Language>,
    pub(crate) leaders: BTreeMap<PlatformId, String>,
    /// Unit code -> name, for summaries.
    pub unit_names: BTreeMap<String, String>,
    /// Units with a head, and the head's recipient id.
    pub heads: Vec<(whistle_domain::UnitCode, String)>,
}

impl Directory {
    pub fn from_city(city: &whistle_domain::city::City) -> Result<Self> {
        let mut d = Directory::default();
        for u in &city.config.units {
            let id = format!("unit:{}", u.code);
            d.unit_names.insert(u.code.to_string(), u.name.clone());
            if let Some(w) = &u.webhook {
                d.webhooks.insert(id.clone(), w.clone());
            }
            if let Some(e) = &u.email {
                d.emails.insert(id, e.clone());
            }
            if let Some(h) = &u.head {
                let hid = format!("unit-head:{}", u.code);
                if let Some(p) = &h.phone {
                    d.phones.insert(hid.clone(), p.clone());
                }
                if let Some(e) = &h.email {
                    d.emails.insert(hid.clone(), e.clone());
                }
                if let Some(l) = &h.language {
                    let lang = Language::parse(l).map_err(|e| Error::Config(format!("city file: unit {} head: {e}", u.code)))?;
                    d.languages.insert(hid.clone(), lang);
                }
                d.heads.push((u.code.clone(), hid));
            }
        }
        for l in &city.config.leaders {
            let id = format!("leader:{}", l.code);
            d.leaders.insert(l.platform.clone(), l.code.clone());
            if let Some(w) = &l.webhook {
                d.webhooks.insert(id.clone(), w.clone());
            }
            if let Some(p) = &l.phone {
                d.phones.insert(id.clone(), p.clone());
            }
            if let Some(e) = &l.email {
                d.emails.insert(id, e.clone());
            }
        }
        Ok(d)
    }

    /// The channels a message goes out on: the citizen's phone and mailbox
    /// from the ticket; officials' webhook (their own, or the default one),
    /// phone and mailbox from the city file; unit heads by SMS and email.
    pub fn routes(&self, m: &Message, default_webhook: &str, sms: bool, email: bool) -> Vec<Route> {
        let id = m.recipient.id();
        let sms_to = |phone: &str| sms.then(|| Route::Sms(phone.to_owned()));
        let email_to = |addr: &str| email.then(|| Route::Email(addr.to_owned()));
        let mut out = Vec::new();
        match &m.recipient {
            Recipient::Citizen => {
                if let Some(c) = &m.citizen {
                    out.extend(c.phone.as_deref().and_then(sms_to));
                    out.extend(c.email.as_deref().and_then(email_to));
                }
                return out;
            }
            Recipient::Unit { .. } | Recipient::Leader { .. } | Recipient::Desk { .. } => out.push(match self.webhooks.get(&id) {
                Some(url) => Route::Webhook { url: url.clone(), shared: false },
                None => Route::Webhook { url: default_webhook.to_owned(), shared: true },
            }),
            Recipient::UnitHead { .. } => {}
        }
        out.extend(self.phones.get(&id).and_then(|p| sms_to(p)));
        out.extend(self.emails.get(&id).and_then(|e| email_to(e)));
        out
    }

    pub fn leader_of(&self, p: &PlatformId) -> Option<String> {
        self.leaders.get(p).cloned()
    }

    pub fn language_of(&self, r: &Recipient) -> Language {
        self.languages.get(&r.id()).copied().unwrap_or(Language::Zh)
    }
}
