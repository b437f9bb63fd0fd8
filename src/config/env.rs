//! `${VAR}` expansion, with `$$` for a literal `$`.

use super::values::is_identifier;

/// Looks a variable up; the process environment in production, a map in tests.
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands `${NAME}` from `env`; `$$` is a literal `$`, any other `$` stays as written.
pub(super) fn expand(text: &str, env: Env<'_>) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                errors.push(
                    "unterminated \"${\" (expected ${NAME}; write $$ for a literal $)".to_owned(),
                );
                rest = "";
                break;
            };
            let name = &tail[..end];
            if !is_identifier(name) {
                errors.push(format!(
                    "invalid variable name {name:?} in \"${{{name}}}\" (expected letters, digits and _, not starting with a digit)"
                ));
            } else {
                match env(name) {
                    Some(value) => out.push_str(&value),
                    None => errors.push(format!("environment variable {name} is not set")),
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expand_handles_every_dollar_form() {
        assert_eq!(expand("x${A}y", &env).as_deref(), Ok("xalphay"));
        assert_eq!(expand("$$${A}$$", &env).as_deref(), Ok("$alpha$"));
        assert_eq!(expand("${EMPTY}", &env).as_deref(), Ok(""));
        assert_eq!(expand("a$b $ $1 $", &env).as_deref(), Ok("a$b $ $1 $"));
        assert_eq!(expand("$$$", &env).as_deref(), Ok("$$"));
        assert_eq!(
            expand("${NOPE}-${A}-${1X}", &env),
            Err(vec![
                "environment variable NOPE is not set".to_owned(),
                "invalid variable name \"1X\" in \"${1X}\" (expected letters, digits and _, not starting with a digit)".to_owned(),
            ])
        );
        assert_eq!(
            expand("ab${A", &env),
            Err(vec![
                "unterminated \"${\" (expected ${NAME}; write $$ for a literal $)".to_owned()
            ])
        );
        assert!(expand("${}", &env).is_err());
        assert_eq!(expand("é${A}ü", &env).as_deref(), Ok("éalphaü"));
    }
}
