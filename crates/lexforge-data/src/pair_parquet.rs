//! Pair files as Parquet (`lexforge prepare --format parquet`): one file per split with the
//! fields of the JSON Lines rows, typed (strings, `uint8` label, `uint32` topics and chunk
//! indices, a boolean `same_topic`, a nullable `neg_type`), snappy-compressed, one row group.
//! pandas, polars, pyarrow and `datasets` read them directly.
//!
//! Rows go through the same serde representation as the JSONL files, so the two formats
//! cannot drift: a field added to [`Pair`] without a column here is an error, not a silent
//! omission.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int32Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::parser::parse_message_type;
use serde_json::{Map, Value};

use crate::config::PairFormat;
use crate::error::{DataError, Result};
use crate::pairs::{Pair, Split};
use crate::shard::{jsonl, read_jsonl};

/// `pairs` encoded in `format` (`path`, where they will go, names them in errors).
///
/// # Errors
/// Serialization errors; [`DataError::PairFile`] for Parquet.
pub fn encode_pairs(format: PairFormat, pairs: &[Pair], path: &Path) -> Result<Vec<u8>> {
    match format {
        PairFormat::Jsonl => jsonl(pairs),
        PairFormat::Parquet => pairs_to_parquet(pairs, path),
    }
}

/// The pairs of `split` in the dataset directory `dir`, from whichever pair file it holds.
///
/// # Errors
/// [`DataError::PairFile`] when it holds both or neither; read errors of the file.
pub fn read_pairs(dir: &Path, split: Split) -> Result<Vec<Pair>> {
    let present: Vec<(PairFormat, PathBuf)> = PairFormat::ALL
        .into_iter()
        .map(|f| (f, f.split_path(dir, split)))
        .filter(|(_, p)| p.is_file())
        .collect();
    match present.as_slice() {
        [(PairFormat::Jsonl, path)] => read_jsonl(path),
        [(PairFormat::Parquet, path)] => read_pairs_parquet(path),
        [] => Err(DataError::PairFile {
            path: PairFormat::Jsonl.split_path(dir, split),
            reason: format!("no {0}.jsonl or {0}.parquet in the dataset", split.name()),
        }),
        [(_, path), ..] => Err(DataError::PairFile {
            path: path.clone(),
            reason: format!(
                "the dataset holds both {0}.jsonl and {0}.parquet; keep one",
                split.name()
            ),
        }),
    }
}

/// The Parquet schema of a pair file: the JSONL row's fields, in order.
const SCHEMA: &str = "message pair {
  required binary text1 (STRING);
  required binary text2 (STRING);
  required int32 label (INTEGER(8,false));
  required binary book1 (STRING);
  required binary book2 (STRING);
  required binary pair_type (STRING);
  optional binary neg_type (STRING);
  required int32 topic1 (INTEGER(32,false));
  required int32 topic2 (INTEGER(32,false));
  required boolean same_topic;
  required int32 chunk1 (INTEGER(32,false));
  required int32 chunk2 (INTEGER(32,false));
}";

/// How a column is stored.
#[derive(Clone, Copy)]
enum Column {
    Text,
    OptionalText,
    Unsigned,
    Bool,
}

/// The columns of [`SCHEMA`], in order.
const COLUMNS: [(&str, Column); 12] = [
    ("text1", Column::Text),
    ("text2", Column::Text),
    ("label", Column::Unsigned),
    ("book1", Column::Text),
    ("book2", Column::Text),
    ("pair_type", Column::Text),
    ("neg_type", Column::OptionalText),
    ("topic1", Column::Unsigned),
    ("topic2", Column::Unsigned),
    ("same_topic", Column::Bool),
    ("chunk1", Column::Unsigned),
    ("chunk2", Column::Unsigned),
];

/// `pairs` as the bytes of a Parquet file (`path` names it in errors).
///
/// # Errors
/// [`DataError::PairFile`] when a row does not fit the schema (a field without a column, a
/// value of the wrong type or out of range) or the encoder fails.
pub fn pairs_to_parquet(pairs: &[Pair], path: &Path) -> Result<Vec<u8>> {
    let bad = |reason: String| DataError::PairFile {
        path: path.to_path_buf(),
        reason,
    };
    let rows: Vec<Map<String, Value>> = pairs
        .iter()
        .map(|p| match serde_json::to_value(p) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(other) => Err(bad(format!("a pair serialized as {other}"))),
            Err(e) => Err(bad(e.to_string())),
        })
        .collect::<Result<_>>()?;
    if let Some(row) = rows.first()
        && let Some(extra) = row.keys().find(|k| !COLUMNS.iter().any(|(c, _)| c == k))
    {
        return Err(bad(format!(
            "the pair field {extra:?} has no Parquet column"
        )));
    }
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(|e| bad(e.to_string()))?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("lexforge {}", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    let mut writer =
        SerializedFileWriter::new(Vec::new(), schema, props).map_err(|e| bad(e.to_string()))?;
    let mut group = writer.next_row_group().map_err(|e| bad(e.to_string()))?;
    for (name, kind) in COLUMNS {
        let values = rows.iter().map(|r| r.get(name).unwrap_or(&Value::Null));
        let mut column = group
            .next_column()
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad(format!("the schema ends before {name}")))?;
        let wrong = |v: &Value| bad(format!("{name}: {v} does not fit the column"));
        let written = match kind {
            Column::Text | Column::OptionalText => {
                let mut bytes = Vec::with_capacity(rows.len());
                let mut levels = Vec::with_capacity(rows.len());
                for v in values {
                    match (v, kind) {
                        (Value::String(s), _) => {
                            bytes.push(ByteArray::from(s.as_str()));
                            levels.push(1);
                        }
                        (Value::Null, Column::OptionalText) => levels.push(0),
                        _ => return Err(wrong(v)),
                    }
                }
                let levels = matches!(kind, Column::OptionalText).then_some(levels.as_slice());
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&bytes, levels, None)
            }
            Column::Unsigned => {
                let ints = values
                    .map(|v| {
                        v.as_u64()
                            .and_then(|u| u32::try_from(u).ok())
                            // Parquet stores unsigned 32-bit values in int32's bits.
                            .map(|u| i32::from_ne_bytes(u.to_ne_bytes()))
                            .ok_or_else(|| wrong(v))
                    })
                    .collect::<Result<Vec<i32>>>()?;
                column.typed::<Int32Type>().write_batch(&ints, None, None)
            }
            Column::Bool => {
                let bools = values
                    .map(|v| v.as_bool().ok_or_else(|| wrong(v)))
                    .collect::<Result<Vec<bool>>>()?;
                column.typed::<BoolType>().write_batch(&bools, None, None)
            }
        };
        written.map_err(|e| bad(e.to_string()))?;
        column.close().map_err(|e| bad(e.to_string()))?;
    }
    group.close().map_err(|e| bad(e.to_string()))?;
    writer.into_inner().map_err(|e| bad(e.to_string()))
}

/// Reads a Parquet pair file: ours, or one written by another tool with the same column
/// names (any integer width, any codec this build reads: snappy or none).
///
/// # Errors
/// [`DataError::PairFile`] naming the file for a damaged or foreign file and for a row that
/// is not a pair (the row number and serde's reason); I/O errors naming the file.
pub fn read_pairs_parquet(path: &Path) -> Result<Vec<Pair>> {
    let bad = |reason: String| DataError::PairFile {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| lexforge_core::Error::io("read", path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| bad(e.to_string()))?;
    let rows = reader.get_row_iter(None).map_err(|e| bad(e.to_string()))?;
    rows.enumerate()
        .map(|(i, row)| {
            let row = row.map_err(|e| bad(format!("row {i}: {e}")))?;
            let object = row
                .get_column_iter()
                .map(|(name, field)| {
                    field_json(field)
                        .map(|v| (name.clone(), v))
                        .ok_or_else(|| bad(format!("row {i}: column {name} holds {field:?}")))
                })
                .collect::<Result<Map<String, Value>>>()?;
            serde_json::from_value(Value::Object(object))
                .map_err(|e| bad(format!("row {i} is not a pair: {e}")))
        })
        .collect()
}

/// A scalar field as JSON; `None` for the nested and exotic types pairs never hold.
fn field_json(field: &Field) -> Option<Value> {
    Some(match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(v) => Value::from(*v),
        Field::Short(v) => Value::from(*v),
        Field::Int(v) => Value::from(*v),
        Field::Long(v) => Value::from(*v),
        Field::UByte(v) => Value::from(*v),
        Field::UShort(v) => Value::from(*v),
        Field::UInt(v) => Value::from(*v),
        Field::ULong(v) => Value::from(*v),
        Field::Str(s) => Value::String(s.clone()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::pairs::{NegType, PairType};

    fn pair(i: u32, neg: Option<NegType>) -> Pair {
        Pair {
            text1: format!("first «{i}» text"),
            text2: "second\ntext".into(),
            label: u8::from(neg.is_none()),
            book1: "austen/emma".into(),
            book2: "wells/the_time_machine".into(),
            pair_type: if neg.is_none() {
                PairType::Positive
            } else {
                PairType::Negative
            },
            neg_type: neg,
            topic1: i,
            topic2: u32::MAX,
            same_topic: i.is_multiple_of(2),
            chunk1: i * 7,
            chunk2: 3,
        }
    }

    #[test]
    fn pairs_round_trip_through_parquet_with_nulls_and_full_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.parquet");
        let pairs = vec![
            pair(0, None),
            pair(1, Some(NegType::Hard)),
            pair(2, Some(NegType::Random)),
        ];
        std::fs::write(&path, pairs_to_parquet(&pairs, &path).unwrap()).unwrap();
        assert_eq!(read_pairs_parquet(&path).unwrap(), pairs);
        // An empty split is a valid, empty file.
        std::fs::write(&path, pairs_to_parquet(&[], &path).unwrap()).unwrap();
        assert!(read_pairs_parquet(&path).unwrap().is_empty());
    }

    #[test]
    fn damaged_files_are_typed_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.parquet");
        let bytes = pairs_to_parquet(&[pair(0, None)], &path).unwrap();
        for damaged in [
            &bytes[..bytes.len() / 2],
            b"PAR1 not parquet".as_slice(),
            &[],
        ] {
            std::fs::write(&path, damaged).unwrap();
            match read_pairs_parquet(&path) {
                Err(DataError::PairFile { path: p, .. }) => assert_eq!(p, path),
                other => panic!("expected PairFile, got {other:?}"),
            }
        }
    }
}
