//! One mail message, whichever format it came from.

use serde::{Deserialize, Serialize};

use crate::date::MailDate;
use crate::span::Span;

/// Where the messages came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MailFormat {
    /// `From ` separated messages (git format-patch, b4, mail clients).
    Mbox,
    /// One message with headers, no `From ` line.
    SingleMessage,
    /// A public-inbox thread view saved as text (lore's `/T/` page).
    PublicInboxDigest,
}

impl MailFormat {
    pub fn describe(self) -> &'static str {
        match self {
            MailFormat::Mbox => "mbox",
            MailFormat::SingleMessage => "single message",
            MailFormat::PublicInboxDigest => "public-inbox thread digest",
        }
    }
}

/// A name and, when known, an address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    pub email: Option<String>,
}

impl Person {
    /// `Name <addr>`, `addr`, `"Name" <addr>` or a bare name (digests).
    pub fn parse(text: &str) -> Person {
        let text = text.trim();
        if let (Some(lt), Some(gt)) = (text.rfind('<'), text.rfind('>'))
            && lt < gt
        {
            let name = text[..lt].trim().trim_matches('"').trim().to_string();
            let email = text[lt + 1..gt].trim().to_string();
            return Person {
                name: if name.is_empty() { email.clone() } else { name },
                email: Some(email),
            };
        }
        if text.contains('@') && !text.contains(' ') {
            return Person {
                name: text.to_string(),
                email: Some(text.to_string()),
            };
        }
        Person {
            name: text.to_string(),
            email: None,
        }
    }

    /// `Name <addr>` for a header (the caller encodes non-ASCII names).
    pub fn display(&self) -> String {
        match &self.email {
            Some(e) => format!("{} <{}>", self.name, e),
            None => self.name.clone(),
        }
    }
}

/// One message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The subject, unfolded and decoded (`[RFC PATCH v3 1/6] uapi: ...`).
    pub subject: String,
    pub from: Person,
    pub date: MailDate,
    /// The date as written in the source.
    pub date_text: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// Without angle brackets. `None` when the source does not say (digests).
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    /// The decoded body, exactly as posted (line breaks kept).
    pub body: String,
    /// The whole message in the input.
    pub span: Span,
    /// Where the body starts in the input. For 8bit bodies, body byte `i`
    /// is input byte `body_offset + i`.
    pub body_offset: usize,
}

impl Message {
    /// The span in the input of a byte range of the body.
    pub fn body_span(&self, start: usize, len: usize) -> Span {
        Span::new(self.body_offset + start, len)
    }
}

/// Split an address list (`To:`/`Cc:`) at top-level commas.
pub fn split_addresses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth_quote = false;
    let mut depth_angle = 0u32;
    let mut cur = String::new();
    for c in text.chars() {
        match c {
            '"' => depth_quote = !depth_quote,
            '<' => depth_angle += 1,
            '>' => depth_angle = depth_angle.saturating_sub(1),
            ',' if !depth_quote && depth_angle == 0 => {
                let t = cur.trim();
                if !t.is_empty() {
                    out.push(t.to_string());
                }
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    let t = cur.trim();
    if !t.is_empty() {
        out.push(t.to_string());
    }
    out
}

/// The id inside `<...>`, or the trimmed text when there are no brackets.
pub fn strip_angles(text: &str) -> Option<String> {
    let t = text.trim();
    let t = match (t.find('<'), t.find('>')) {
        (Some(a), Some(b)) if a < b => &t[a + 1..b],
        _ => t,
    };
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_in_every_shape() {
        assert_eq!(
            Person::parse("\"Liao, Wenzhao\" <w@ruc.edu.cn>"),
            Person {
                name: "Liao, Wenzhao".into(),
                email: Some("w@ruc.edu.cn".into())
            }
        );
        assert_eq!(
            Person::parse("w@ruc.edu.cn").email.as_deref(),
            Some("w@ruc.edu.cn")
        );
        let bare = Person::parse("Jori Koolstra");
        assert_eq!((bare.name.as_str(), bare.email), ("Jori Koolstra", None));
    }

    #[test]
    fn address_lists_split_outside_quotes() {
        assert_eq!(
            split_addresses("\"A, B\" <a@b>, c@d,\n\tlinux-api"),
            vec!["\"A, B\" <a@b>", "c@d", "linux-api"]
        );
        assert_eq!(strip_angles(" <x@y> "), Some("x@y".into()));
        assert_eq!(strip_angles("<>"), None);
    }
}
