use std::fmt;

/// A bus topic or topic filter in MQTT style: levels separated by `/`, `+` matches one level,
/// a final `#` matches any number of levels (including none).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPattern(String);

impl TopicPattern {
    /// Validates a pattern: non-empty, at most 256 bytes, printable, `+` and `#` only as whole
    /// levels and `#` only last.
    pub fn parse(text: &str) -> Result<TopicPattern, String> {
        if text.is_empty() {
            return Err("a topic cannot be empty".into());
        }
        if text.len() > 256 {
            return Err(format!("topic `{text}` is longer than 256 bytes"));
        }
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "topic `{text}` contains whitespace or control characters"
            ));
        }
        let levels: Vec<&str> = text.split('/').collect();
        for (i, level) in levels.iter().enumerate() {
            let wild = level.contains('+') || level.contains('#');
            if wild && level.len() != 1 {
                return Err(format!("topic `{text}`: wildcards must fill a whole level"));
            }
            if *level == "#" && i + 1 != levels.len() {
                return Err(format!("topic `{text}`: `#` must be the last level"));
            }
        }
        Ok(TopicPattern(text.to_string()))
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern contains wildcards.
    pub fn is_wildcard(&self) -> bool {
        self.0.split('/').any(|l| l == "+" || l == "#")
    }

    /// Whether a concrete `topic` matches this pattern.
    pub fn matches(&self, topic: &str) -> bool {
        let mut pattern = self.0.split('/');
        let mut levels = topic.split('/');
        loop {
            match (pattern.next(), levels.next()) {
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(p), Some(l)) if p == l => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_topics_match_only_themselves() {
        let p = TopicPattern::parse("camera/frames").unwrap();
        assert!(p.matches("camera/frames"));
        assert!(!p.matches("camera/frames/raw"));
        assert!(!p.matches("camera"));
    }

    #[test]
    fn plus_matches_exactly_one_level() {
        let p = TopicPattern::parse("camera/+/frames").unwrap();
        assert!(p.matches("camera/front/frames"));
        assert!(!p.matches("camera/frames"));
        assert!(!p.matches("camera/a/b/frames"));
    }

    #[test]
    fn hash_matches_the_rest_including_nothing() {
        let p = TopicPattern::parse("camera/#").unwrap();
        assert!(p.matches("camera"));
        assert!(p.matches("camera/front/frames"));
        assert!(!p.matches("cameras/front"));
    }

    #[test]
    fn malformed_patterns_are_refused_with_the_reason() {
        assert!(TopicPattern::parse("").unwrap_err().contains("empty"));
        assert!(
            TopicPattern::parse("a/#/b")
                .unwrap_err()
                .contains("last level")
        );
        assert!(
            TopicPattern::parse("a/b+")
                .unwrap_err()
                .contains("whole level")
        );
        assert!(
            TopicPattern::parse("a b")
                .unwrap_err()
                .contains("whitespace")
        );
    }

    proptest! {
        #[test]
        fn a_concrete_topic_always_matches_itself_and_hash(levels in prop::collection::vec("[a-z0-9]{1,6}", 1..5)) {
            let topic = levels.join("/");
            prop_assert!(TopicPattern::parse(&topic).unwrap().matches(&topic));
            prop_assert!(TopicPattern::parse("#").unwrap().matches(&topic));
            let first_plus = format!("+{}", &topic[levels[0].len()..]);
            prop_assert!(TopicPattern::parse(&first_plus).unwrap().matches(&topic));
        }
    }
}
