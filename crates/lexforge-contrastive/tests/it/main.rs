//! The matcher end to end on real books: prepare with all-MiniLM-L6-v2, train a tiny randomly
//! initialized body with the MiniLM tokenizer, save, reload, calibrate, evaluate, search.

mod adversary;
mod pipeline;
