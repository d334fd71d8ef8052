use std::fmt;
use std::path::Path;

/// Why a manifest was refused: the file, the line and column when known, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// File name or other origin of the text.
    pub origin: String,
    /// 1-based line, when the problem has a place in the text.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What was wrong, naming the field.
    pub message: String,
}

impl ManifestError {
    pub(crate) fn io(path: &Path, err: std::io::Error) -> ManifestError {
        ManifestError {
            origin: path.display().to_string(),
            line: None,
            column: None,
            message: format!("cannot read manifest: {err}"),
        }
    }

    pub(crate) fn at(origin: &str, text: &str, offset: Option<usize>, message: String) -> Self {
        let (line, column) = match offset {
            Some(offset) => {
                let offset = offset.min(text.len());
                let before = &text[..offset];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        ManifestError {
            origin: origin.to_string(),
            line,
            column,
            message,
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.origin, self.message),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.origin, self.message),
            _ => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}
