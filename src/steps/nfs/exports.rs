//! The managed block of `/etc/exports`: one marked block holding the
//! step's export line, every other line kept as it is.

use std::path::Path;

use crate::steps::StepError;

const BEGIN: &str = "# BEGIN stackinstall: managed block, change the profile's [nfs] instead";
const END: &str = "# END stackinstall";

/// Where the managed block of `exports` starts and ends (line indexes),
/// `None` when there is none. A start without its end (the file was cut or
/// edited) is an error naming the line: everything after it could be
/// someone else's.
pub(super) fn block_lines(exports: &str, path: &Path) -> Result<Option<(usize, usize)>, StepError> {
    let lines: Vec<&str> = exports.lines().collect();
    let Some(begin) = lines.iter().position(|l| l.trim() == BEGIN) else {
        return Ok(None);
    };
    match lines[begin + 1..].iter().position(|l| l.trim() == END) {
        Some(offset) => Ok(Some((begin, begin + 1 + offset))),
        None => Err(StepError::failed(
            format!(
                "`{}` line {}: the stackinstall block starts here but has no end marker (`{END}`): nothing was changed in the file",
                path.display(),
                begin + 1
            ),
            format!(
                "put the line `{END}` back after the block's export line (or delete the block's lines), then run again"
            ),
        )),
    }
}

/// `exports` with the managed block holding `line`: replaced where it is,
/// appended when there is none; every other line kept.
pub fn with_block(exports: &str, line: &str, path: &Path) -> Result<String, StepError> {
    let block = format!("{BEGIN}\n{line}\n{END}\n");
    let lines: Vec<&str> = exports.lines().collect();
    let joined = |part: &[&str]| part.iter().map(|l| format!("{l}\n")).collect::<String>();
    Ok(match block_lines(exports, path)? {
        Some((begin, end)) => {
            format!(
                "{}{block}{}",
                joined(&lines[..begin]),
                joined(&lines[end + 1..])
            )
        }
        None if exports.is_empty() => block,
        None if exports.ends_with('\n') => format!("{exports}{block}"),
        None => format!("{exports}\n{block}"),
    })
}

/// `exports` without the managed block.
pub fn without_block(exports: &str, path: &Path) -> Result<String, StepError> {
    let lines: Vec<&str> = exports.lines().collect();
    let joined = |part: &[&str]| part.iter().map(|l| format!("{l}\n")).collect::<String>();
    Ok(match block_lines(exports, path)? {
        Some((begin, end)) => format!("{}{}", joined(&lines[..begin]), joined(&lines[end + 1..])),
        None => exports.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_is_appended_then_replaced_in_place() {
        let foreign = "/srv/backup 192.168.1.0/24(ro)\n";
        let path = Path::new("/etc/exports");
        let first = with_block(foreign, "/data/x 10.42.0.0/16(rw)", path).unwrap();
        assert!(first.starts_with(foreign));
        let second = with_block(
            &format!("{first}/srv/other *(ro)\n"),
            "/data/x 10.50.0.0/16(rw)",
            path,
        )
        .unwrap();
        assert_eq!(
            second,
            format!("{foreign}{BEGIN}\n/data/x 10.50.0.0/16(rw)\n{END}\n/srv/other *(ro)\n")
        );
        assert_eq!(
            without_block(&second, path).unwrap(),
            format!("{foreign}/srv/other *(ro)\n")
        );
    }

    #[test]
    fn a_block_without_its_end_is_an_error_naming_the_line() {
        let path = Path::new("/etc/exports");
        let cut = format!("/srv/a *(ro)\n{BEGIN}\n/data/x 10.42.0.0/16(rw)\n/srv/b *(ro)\n");
        for error in [
            without_block(&cut, path).unwrap_err(),
            with_block(&cut, "/data/x 10.42.0.0/16(rw)", path).unwrap_err(),
        ] {
            let text = error.to_string();
            assert!(text.contains("`/etc/exports` line 2"), "{text}");
            assert!(text.contains("no end marker"), "{text}");
        }
    }
}
