//! Cron expressions as operators write them, in the form the scheduler's
//! `cron::Schedule` reads.

use std::str::FromStr;

/// Accepts what `cron::Schedule` parses (6 or 7 fields, seconds first, or an
/// `@daily`-style shorthand) and classic 5-field crontab lines, which are
/// rewritten with a leading seconds field so the stored string always parses.
pub(super) fn normalize_cron(raw: &str) -> Result<String, String> {
    let fields: Vec<&str> = raw.split_whitespace().collect();
    let normalized = match fields.len() {
        1 if fields[0].starts_with('@') => fields[0].to_owned(),
        5 => classic_cron(&fields)?,
        6 | 7 => fields.join(" "),
        n => {
            let plural = if n == 1 { "" } else { "s" };
            return Err(format!(
                "expected 6 or 7 fields (sec min hour day-of-month month day-of-week \
                 [year]) or a classic 5-field crontab line, found {n} field{plural}"
            ));
        }
    };
    let schedule = cron::Schedule::from_str(&normalized).map_err(|e| {
        // The crate's message repeats the expression with a caret under the
        // fault; its last line alone says what is wrong.
        let text = e.to_string();
        let reason = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        format!("expected a valid cron expression ({})", reason.trim())
    })?;
    if schedule.upcoming(chrono::Utc).next().is_none() {
        return Err("expected a cron expression that fires at least once from now".to_owned());
    }
    Ok(normalized)
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// Prefixing "0 " alone would be wrong twice over: the cron crate numbers
/// weekdays 1 (Sunday) to 7 where crontab uses 0 or 7 for Sunday and 1 for
/// Monday, and it requires both day fields to match where crontab fires
/// when either does.
fn classic_cron(fields: &[&str]) -> Result<String, String> {
    let restricted = |field: &str| field != "*" && field != "?";
    if restricted(fields[2]) && restricted(fields[4]) {
        return Err(
            "expected a 5-field expression to restrict day-of-month or day-of-week, not both \
             (crontab fires when either matches, this scheduler only when both do; \
             write 6 fields to say which you mean)"
                .to_owned(),
        );
    }
    let weekdays = classic_weekdays(fields[4])
        .map_err(|reason| format!("expected a valid cron expression ({reason})"))?;
    Ok(format!(
        "0 {} {} {} {} {weekdays}",
        fields[0], fields[1], fields[2], fields[3]
    ))
}

/// Rewrites a crontab day-of-week field with names, which both conventions read alike.
fn classic_weekdays(field: &str) -> Result<String, String> {
    if !field.bytes().any(|b| b.is_ascii_digit()) {
        return Ok(field.to_owned());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => match step.parse::<usize>() {
                Ok(step) if step >= 1 => (base, Some(step)),
                _ => {
                    return Err(format!(
                        "day-of-week step {step:?} is not a positive integer"
                    ));
                }
            },
            None => (item, None),
        };
        let (from, to) = if base == "*" || base == "?" {
            (0, 6)
        } else if let Some((a, b)) = base.split_once('-') {
            (classic_weekday(a)?, classic_weekday(b)?)
        } else {
            let day = classic_weekday(base)?;
            // `N/step` means "from N to the end of the week, every step".
            (day, if step.is_some() { day.max(6) } else { day })
        };
        if from > to {
            return Err(format!("day-of-week range {base:?} runs backwards"));
        }
        for day in (from..=to).step_by(step.unwrap_or(1)) {
            days[day % 7] = true;
        }
    }
    if days.iter().all(|set| *set) {
        return Ok("*".to_owned());
    }
    let names: Vec<&str> = WEEKDAYS
        .iter()
        .zip(days)
        .filter_map(|(name, set)| set.then_some(*name))
        .collect();
    Ok(names.join(","))
}

fn classic_weekday(value: &str) -> Result<usize, String> {
    if let Ok(day) = value.parse::<usize>() {
        return if day <= 7 {
            Ok(day)
        } else {
            Err(format!("day of week {value:?} is out of range 0-7"))
        };
    }
    WEEKDAYS
        .iter()
        .position(|name| name.eq_ignore_ascii_case(value))
        .ok_or_else(|| format!("{value:?} is not a day of the week"))
}
