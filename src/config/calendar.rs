//! Whether a text is a systemd calendar event, as `OnCalendar=` takes it:
//! the grammar of systemd.time(7), "CALENDAR EVENTS" (systemd's
//! `src/shared/calendarspec.c`, `calendar_spec_from_string`). A shorthand
//! (`minutely`, `hourly`, `daily`, `monthly`, `weekly`, `yearly`,
//! `annually`, `quarterly`, `semiannually`), or
//! `[WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]]`, each optionally
//! followed by a time zone (`UTC`, or an IANA `Area/Location`).
//!
//! Weekdays: English names, abbreviated or not, any case, joined by `,`
//! and `..`. Date and time components: `*`, or values joined by `,`, each
//! a number, a range `A..B`, either with a repetition `/N`; the day may
//! follow `~` instead of `-` (the last days of the month); seconds may
//! have a fraction. Stricter than systemd where it costs nothing (two-
//! digit years and `@EPOCH` are refused): a refused event can be written
//! another way, while one systemd refuses would leave a timer that never
//! loads.

/// Whether `text` is a calendar event systemd accepts.
pub fn is_calendar_event(text: &str) -> bool {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    if words.len() > 1 && is_time_zone(words[words.len() - 1]) {
        words.pop();
    }
    match words.as_slice() {
        [] => false,
        [word] if is_shorthand(word) => true,
        _ => is_normalized(&words),
    }
}

fn is_shorthand(word: &str) -> bool {
    [
        "minutely",
        "hourly",
        "daily",
        "monthly",
        "weekly",
        "yearly",
        "annually",
        "quarterly",
        "semiannually",
    ]
    .iter()
    .any(|shorthand| word.eq_ignore_ascii_case(shorthand))
}

/// `UTC`, or an IANA name: `Area/Location` of letters, digits, `_`, `-`,
/// `+` (systemd checks it against the time zone database).
fn is_time_zone(word: &str) -> bool {
    if word == "UTC" {
        return true;
    }
    let parts: Vec<&str> = word.split('/').collect();
    parts.len() >= 2
        && parts.iter().all(|part| {
            part.starts_with(|c: char| c.is_ascii_uppercase())
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-+".contains(c))
        })
}

/// `[WEEKDAYS] [DATE] [TIME]`, at least one of them, in that order.
fn is_normalized(words: &[&str]) -> bool {
    let mut rest = words;
    if let Some((first, others)) = rest.split_first()
        && first.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        if !is_weekdays(first) {
            return false;
        }
        rest = others;
    }
    if let Some((first, others)) = rest.split_first()
        && !first.contains(':')
    {
        if !is_date(first) {
            return false;
        }
        rest = others;
    }
    match rest {
        [] => words.len() > rest.len(),
        [time] => is_time(time),
        _ => false,
    }
}

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

fn is_weekday(word: &str) -> bool {
    let word = word.to_ascii_lowercase();
    WEEKDAYS.iter().any(|day| word == *day || word == day[..3])
}

/// `Mon`, `Mon,Wed`, `Mon..Fri`, `Sat,Mon..Wed`.
fn is_weekdays(word: &str) -> bool {
    // systemd takes `Wed, 17:48` (one `,` after the last day) too.
    let word = word.strip_suffix(',').unwrap_or(word);
    word.split(',').all(|item| match item.split_once("..") {
        Some((from, to)) => is_weekday(from) && is_weekday(to),
        None => is_weekday(item),
    })
}

/// `[YEAR-]MONTH-DAY`, or `[YEAR-]MONTH~DAY` (counting from the end).
fn is_date(word: &str) -> bool {
    let (head, day) = match (word.rsplit_once('~'), word.rsplit_once('-')) {
        (Some((head, day)), _) if !day.contains('-') => (head, day),
        (_, Some((head, day))) => (head, day),
        _ => return false,
    };
    let (year, month) = match head.split_once('-') {
        Some((year, month)) => (Some(year), month),
        None => (None, head),
    };
    year.is_none_or(|year| is_component(year, 1970, 2199, false, 4))
        && is_component(month, 1, 12, false, 2)
        && is_component(day, 1, 31, false, 2)
}

/// `HOUR:MINUTE[:SECOND]`.
fn is_time(word: &str) -> bool {
    let parts: Vec<&str> = word.split(':').collect();
    let (hour, minute, second) = match parts.as_slice() {
        [hour, minute] => (*hour, *minute, None),
        [hour, minute, second] => (*hour, *minute, Some(*second)),
        _ => return false,
    };
    is_component(hour, 0, 23, false, 2)
        && is_component(minute, 0, 59, false, 2)
        && second.is_none_or(|second| is_component(second, 0, 59, true, 2))
}

/// `*`, or `,`-joined values, each `A`, `A..B`, `A/N` or `A..B/N` with
/// `A <= B` in `min..=max`; at most `digits` digits (a year exactly 4).
fn is_component(text: &str, min: u64, max: u64, fraction: bool, digits: usize) -> bool {
    if text == "*" {
        return true;
    }
    let value = |text: &str| -> Option<u64> {
        let (whole, part) = match text.split_once('.') {
            Some((whole, part)) if fraction => (whole, Some(part)),
            Some(_) => return None,
            None => (text, None),
        };
        let size_ok = match digits {
            4 => whole.len() == 4,
            _ => (1..=digits).contains(&whole.len()),
        };
        let part_ok =
            part.is_none_or(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        let number = whole.parse::<u64>().ok()?;
        (size_ok && part_ok && whole.bytes().all(|b| b.is_ascii_digit()))
            .then_some(number)
            .filter(|number| (min..=max).contains(number))
    };
    text.split(',').all(|item| {
        let (range, repetition) = match item.split_once('/') {
            Some((range, repetition)) => (range, Some(repetition)),
            None => (item, None),
        };
        let repetition_ok = repetition.is_none_or(|repetition| {
            !repetition.is_empty()
                && repetition
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (fraction && b == b'.'))
                && !repetition.trim_matches(|c| c == '0' || c == '.').is_empty()
        });
        let range_ok = match range.split_once("..") {
            Some((from, to)) => {
                matches!((value(from), value(to)), (Some(from), Some(to)) if from <= to)
            }
            None => value(range).is_some(),
        };
        repetition_ok && range_ok
    })
}

#[cfg(test)]
mod tests {
    use super::is_calendar_event;

    /// systemd.time(7)'s own examples, and what `systemd-analyze calendar`
    /// refuses.
    #[test]
    fn the_examples_of_systemd_time_pass_and_what_systemd_refuses_does_not() {
        for accepted in [
            "daily",
            "Weekly",
            "minutely",
            "quarterly",
            "semiannually",
            "daily UTC",
            "Sat,Thu,Mon..Wed,Sat..Sun",
            "Wed *-1",
            "Wed..Wed,Wed *-1",
            "Wed, 17:48",
            "Wed..Sat,Tue 2012-10-15 1:2:3",
            "*-*-7 0:0:0",
            "10-15",
            "monday *-12-* 17:00",
            "Mon,Fri *-*-3,1,2 *:30:45",
            "12,14,13,12:20,10,30",
            "12..14:10,20,30",
            "mon,fri *-1/2-1,3 *:30:45",
            "03-05 08:05:40",
            "08:05:40",
            "05:40",
            "Sat,Sun 12-05 08:05:40",
            "Sat,Sun 08:05:40",
            "2003-03-05 05:40",
            "05:40:23.4200004/3.1700005",
            "2003-02..04-05",
            "2003-03-05 05:40 UTC",
            "2003-03-05",
            "03-05",
            "*:2/3",
            "*-*-* 00:00:00",
            "*:0/15",
            "*-02~03",
            "Mon *-05~07/1",
            "Sun *-*-* 03:00:00 Europe/Berlin",
            "Mon..Fri 02:30",
        ] {
            assert!(is_calendar_event(accepted), "{accepted:?} was refused");
        }
        for refused in [
            "",
            " ",
            "every day",
            "25:00",
            "12:60",
            "*-13-01",
            "*-*-32",
            "Funday 02:00",
            "*/15:00",
            "daily; rm -rf /",
            "02:00 Mon",
            "2003-03-05 05:40 utc",
            "*:0/0",
            "3..1:00",
            "12:00:00:00",
            "2003-03-05 05:40 UTC UTC",
            "-1-01",
            "daily daily",
        ] {
            assert!(!is_calendar_event(refused), "{refused:?} was accepted");
        }
    }
}
