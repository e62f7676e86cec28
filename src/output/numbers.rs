//! Numbers as every table, graph and screen writes them: digits grouped in threes, or three
//! significant digits with an SI suffix where columns are narrow; and counts with their noun.

/// Groups digits in threes: 1234567 -> "1,234,567".
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Three significant digits and an SI suffix: 950, 1.23k, 12.3k, 123k, 1.23M, ... 18.4E.
pub fn compact(value: f64) -> String {
    if value.is_nan() || value < 0.0 {
        return "?".into();
    }
    if value < 999.5 {
        return format!("{value:.0}");
    }
    const UNITS: [&str; 6] = ["k", "M", "G", "T", "P", "E"];
    let mut scaled = value / 1000.0;
    let mut unit = 0;
    while scaled >= 999.5 && unit + 1 < UNITS.len() {
        scaled /= 1000.0;
        unit += 1;
    }
    if scaled >= 999.5 {
        // Past what a u64 holds (or infinite): no counter gets here.
        return ">999E".into();
    }
    let decimals = if scaled < 9.995 {
        2
    } else if scaled < 99.95 {
        1
    } else {
        0
    };
    format!("{scaled:.decimals$}{}", UNITS[unit])
}

/// Exact (1,234,567) where it fits in `width` columns, else compact (1.23M).
pub fn fit(value: u64, width: usize) -> String {
    let exact = thousands(value);
    if exact.len() <= width {
        exact
    } else {
        compact(value as f64)
    }
}

/// "1 prefix", "2 prefixes", "0 prefixes".
pub fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn compact_numbers() {
        let cases = [
            (0.0, "0"),
            (950.0, "950"),
            (999.4, "999"),
            (999.6, "1.00k"),
            (1_234.0, "1.23k"),
            (12_345.0, "12.3k"),
            (123_456.0, "123k"),
            (999_999.0, "1.00M"),
            (1_250_000.0, "1.25M"),
            (u64::MAX as f64, "18.4E"),
            (f64::MAX, ">999E"),
            (f64::INFINITY, ">999E"),
            (f64::NAN, "?"),
            (-1.0, "?"),
        ];
        for (value, text) in cases {
            assert_eq!(compact(value), text, "{value}");
        }
    }

    #[test]
    fn exact_where_it_fits() {
        assert_eq!(fit(123_456, 7), "123,456");
        assert_eq!(fit(1_234_567, 7), "1.23M");
    }

    #[test]
    fn counted_picks_the_noun() {
        assert_eq!(counted(0, "prefix", "prefixes"), "0 prefixes");
        assert_eq!(counted(1, "prefix", "prefixes"), "1 prefix");
        assert_eq!(counted(2, "port", "ports"), "2 ports");
    }
}
