//! The grounded prompt: which retrieved chunks go in, and how they are shown.
//!
//! The host ranks the chunks of all the knowledge bases together and sends the
//! best `top_k` (`retrieval.retrieve`); in rank order, each goes into the prompt only if it
//! still fits in the room the model's context leaves (a chunk too long for
//! what is left is skipped and a shorter one may follow). The chunks that
//! went in are numbered `[1]`, `[2]`, … in the question and are exactly the
//! response's `citations`.
//!
//! They are placed in the last user message, right before the question,
//! rather than in the system message: small models copy facts far more
//! reliably from text next to the question than from a long system prompt.

use serde_json::{Value, json};

/// One retrieved chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Knowledge base id.
    pub knowledge_base: String,
    /// File id.
    pub file_id: String,
    /// File name, shown to the model and cited.
    pub filename: String,
    /// Position in its document.
    pub chunk_index: u32,
    /// The chunk text.
    pub text: String,
    /// Retrieval score.
    pub score: f32,
}

/// The user message that asks `question` over `sources` (numbered from 1);
/// the question alone when there are none.
pub fn grounded_question(question: &str, sources: &[Source]) -> String {
    if sources.is_empty() {
        return question.to_owned();
    }
    let mut out = String::from(
        "Answer the question using the sources below. Use only facts stated in the sources; \
         if they do not contain the answer, say that you do not know.\n\nSources:\n",
    );
    for (i, s) in sources.iter().enumerate() {
        out.push_str(&format!("[{}] {}: {}\n", i + 1, s.filename, s.text.trim()));
    }
    out.push_str("\nQuestion: ");
    out.push_str(question);
    out
}

/// The sources, in rank order, that fit: the grounded question may take at
/// most `budget` tokens as `count` measures them.
pub fn fit<E>(
    question: &str,
    ranked: Vec<Source>,
    budget: u32,
    mut count: impl FnMut(&str) -> Result<u32, E>,
) -> Result<Vec<Source>, E> {
    let mut chosen: Vec<Source> = Vec::with_capacity(ranked.len());
    for s in ranked {
        chosen.push(s);
        if count(&grounded_question(question, &chosen))? > budget {
            chosen.pop();
        }
    }
    Ok(chosen)
}

/// The `citations` field: the sources in the prompt, numbered as shown.
pub fn citations(sources: &[Source]) -> Value {
    Value::Array(
        sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "index": i + 1,
                    "source": s.filename,
                    "file_id": s.file_id,
                    "knowledge_base_id": s.knowledge_base,
                    "chunk_index": s.chunk_index,
                    "text": s.text,
                    "score": s.score,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn src(file: &str, index: u32, text: &str, score: f32) -> Source {
        Source {
            knowledge_base: "kb_1".into(),
            file_id: format!("file-{file}"),
            filename: format!("{file}.txt"),
            chunk_index: index,
            text: text.into(),
            score,
        }
    }

    #[test]
    fn sources_are_numbered_before_the_question() {
        let q = grounded_question("Who?", &[src("a", 0, " Ada wrote it. ", 1.0), src("b", 2, "Bob read it.", 0.5)]);
        assert!(q.contains("[1] a.txt: Ada wrote it.\n[2] b.txt: Bob read it.\n"), "{q}");
        assert!(q.ends_with("\nQuestion: Who?"));
        assert_eq!(grounded_question("Who?", &[]), "Who?");
    }

    #[test]
    fn only_what_fits_goes_in_and_shorter_chunks_may_follow_a_long_one() {
        // One token per byte: easy to reason about.
        let bytes = |s: &str| Ok::<u32, Infallible>(s.len() as u32);
        let long = "x".repeat(400);
        let ranked = vec![src("a", 0, "short one", 0.9), src("b", 0, &long, 0.8), src("c", 0, "tiny", 0.7)];
        let base = grounded_question("Q?", &ranked[..1]).len() as u32;
        let chosen = fit("Q?", ranked.clone(), base + 40, bytes).unwrap();
        let files: Vec<&str> = chosen.iter().map(|s| s.filename.as_str()).collect();
        assert_eq!(files, ["a.txt", "c.txt"]);
        assert!(fit("Q?", ranked.clone(), 10, bytes).unwrap().is_empty());
        assert_eq!(fit("Q?", ranked, u32::MAX, bytes).unwrap().len(), 3);
    }

    #[test]
    fn citations_match_the_numbers_in_the_prompt() {
        let c = citations(&[src("a", 3, "t", 0.25)]);
        assert_eq!(
            c,
            json!([{"index": 1, "source": "a.txt", "file_id": "file-a", "knowledge_base_id": "kb_1",
                    "chunk_index": 3, "text": "t", "score": 0.25}])
        );
    }
}
