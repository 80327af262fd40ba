//! POSIX shell quoting for generated scripts and recipes: a path with spaces, quotes, `$(…)`
//! or backquotes stays one literal word.

/// Quotes `s` as one shell word: left bare when it only has characters no shell treats
/// specially, else single-quoted (a `'` inside becomes `'\''`).
pub fn quote(s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '/' | '.' | '_' | '-' | '+' | ',' | ':' | '=' | '@' | '%')
        });
    if bare {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Quotes and joins a command line.
pub fn join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_words_survive_a_real_shell() {
        let words = [
            "plain/path.fits",
            "a b",
            "$(touch /tmp/spx-pwned)",
            "`id`",
            "it's",
            "\"q\"",
            "",
            "*",
            "x;y",
            "new\nline",
        ];
        let script = format!("printf '%s\\0' {}", join(&words));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let mut got: Vec<String> = out
            .stdout
            .split(|&b| b == 0)
            .map(|s| String::from_utf8(s.to_vec()).unwrap())
            .collect();
        // printf ends every word with NUL: the split leaves one empty piece at the end.
        assert_eq!(got.pop().as_deref(), Some(""));
        assert_eq!(got, words);
        assert!(!std::path::Path::new("/tmp/spx-pwned").exists());
    }
}
