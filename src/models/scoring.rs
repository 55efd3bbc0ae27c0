//! How well speech was heard: the word error rate that the embedded-speech tests and benchmark
//! measure, on words compared without case or punctuation, and numbers whether written in digits
//! or words (up to twenty as numbers, longer ones digit by digit, as order and phone numbers are
//! said).

const NUMBERS: [&str; 21] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];

/// Edits (substitutions, insertions, deletions) over the words said.
pub fn word_error_rate(said: &str, heard: &str) -> f64 {
    let (edits, words) = word_edits(said, heard);
    edits as f64 / words.max(1) as f64
}

/// The word edits that turn `said` into `heard`, and the number of words said.
pub fn word_edits(said: &str, heard: &str) -> (usize, usize) {
    let (said, heard) = (words(said), words(heard));
    let mut row: Vec<usize> = (0..=heard.len()).collect();
    for (i, s) in said.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, h) in heard.iter().enumerate() {
            let substitution = previous + usize::from(s != h);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    (row[heard.len()], said.len())
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.chars().filter(|c| c.is_alphanumeric() || *c == '\'').collect::<String>().to_lowercase())
        .filter(|w| !w.is_empty())
        .flat_map(|w| match w.parse::<usize>() {
            Ok(n) if n < NUMBERS.len() => vec![NUMBERS[n].to_owned()],
            Ok(_) => w.chars().map(|d| NUMBERS[d.to_digit(10).unwrap_or(0) as usize].to_owned()).collect(),
            Err(_) => vec![w],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_error_rate_counts_edits_over_words_said() {
        assert_eq!(word_error_rate("Book a table, please.", "book a table please"), 0.0);
        assert_eq!(word_error_rate("book a table", "book the table now"), 2.0 / 3.0);
        assert_eq!(word_error_rate("book a table", ""), 1.0);
        assert_eq!(word_error_rate("a table for two at 7", "a table for 2 at seven"), 0.0);
        assert_eq!(word_error_rate("order four two seven", "order 427"), 0.0);
        assert_eq!(word_edits("", "hello"), (1, 0));
    }
}
