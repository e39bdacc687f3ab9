//! Text helpers every layer uses: cutting a string for a message or a log.

/// `s` cut to at most `max` characters, never inside one; a cut ends in "…".
pub fn clip(s: &str, max: usize) -> String {
    if max == 0 {
        return String::new();
    }
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some(_) => {
            // Room for the ellipsis: keep max - 1 characters.
            let end = s.char_indices().nth(max - 1).map_or(s.len(), |(i, _)| i);
            format!("{}…", &s[..end])
        }
    }
}
