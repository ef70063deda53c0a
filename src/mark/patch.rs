//! `Embargo-Copy:` trailers in `git format-patch` attachments (optional per
//! list): the copy id lands in the commit message, which `git am` keeps,
//! and the diff is untouched, so the patch still applies.

/// Whether `text` is a `git format-patch` mail.
pub fn is_format_patch(text: &str) -> bool {
    let first = text.lines().next().unwrap_or_default();
    first.starts_with("From ")
        && first.ends_with("Mon Sep 17 00:00:00 2001")
        && text.contains("\nSubject: ")
        && text.contains("\ndiff --git ")
}

/// `patch` with an `Embargo-Copy: <copy id>` trailer at the end of its
/// commit message: in the trailer block when there is one (before
/// `---`), else as a new paragraph.
pub fn add_trailer(patch: &str, copy_id: &str) -> String {
    let eol = if patch.contains("\r\n") { "\r\n" } else { "\n" };
    let lines: Vec<&str> = patch.split_inclusive('\n').collect();
    let body_start = lines
        .iter()
        .position(|l| l.trim_end().is_empty())
        .map_or(lines.len(), |i| i + 1);
    // The commit message ends at the "---" before the diffstat, or at the
    // diff itself.
    let end = lines
        .iter()
        .enumerate()
        .skip(body_start)
        .find(|(_, l)| l.trim_end() == "---" || l.starts_with("diff --git "))
        .map_or(lines.len(), |(i, _)| i);
    let last = (body_start..end)
        .rev()
        .find(|&i| !lines[i].trim_end().is_empty());
    let joins_block = last.is_some_and(|i| i + 1 == end && is_trailer(lines[i]));
    let after_blank = end > body_start && lines[end - 1].trim_end().is_empty();
    let mut out = String::with_capacity(patch.len() + 40);
    for line in &lines[..end] {
        out.push_str(line);
    }
    if !joins_block && !after_blank {
        out.push_str(eol);
    }
    out.push_str(&format!("Embargo-Copy: {copy_id}{eol}"));
    for line in &lines[end..] {
        out.push_str(line);
    }
    out
}

fn is_trailer(line: &str) -> bool {
    let Some((key, value)) = line.split_once(": ") else {
        return false;
    };
    !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !value.trim().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\n\
From: Dev <dev@example.org>\nDate: Wed, 25 Nov 2026 09:00:00 +0000\nSubject: [PATCH] parser: check length\n\n\
Reject inputs longer than the buffer.\n\nSigned-off-by: Dev <dev@example.org>\n---\n src/parser.c | 1 +\n 1 file changed\n\n\
diff --git a/src/parser.c b/src/parser.c\n--- a/src/parser.c\n+++ b/src/parser.c\n@@ -1 +1,2 @@\n int x;\n+int y;\n";

    #[test]
    fn trailer_joins_the_trailer_block_and_leaves_the_diff_alone() {
        assert!(is_format_patch(PATCH));
        let out = add_trailer(PATCH, "00112233aabbccdd");
        assert!(
            out.contains(
                "Signed-off-by: Dev <dev@example.org>\nEmbargo-Copy: 00112233aabbccdd\n---\n"
            ),
            "{out}"
        );
        let diff = &PATCH[PATCH.find("diff --git").unwrap()..];
        assert!(out.ends_with(diff));
    }

    #[test]
    fn without_trailers_it_starts_a_paragraph() {
        let patch = PATCH.replace("Signed-off-by: Dev <dev@example.org>\n", "");
        let out = add_trailer(&patch, "1");
        assert!(
            out.contains("Reject inputs longer than the buffer.\n\nEmbargo-Copy: 1\n---\n"),
            "{out}"
        );
    }
}
