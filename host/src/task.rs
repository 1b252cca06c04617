//! Tasks: the model and the checks on what clients send.
//!
//! Bodies are read as JSON values and checked field by field, so that a
//! client learns which field is wrong and why, not a serde error position.

use serde::Serialize;
use serde_json::{Map, Value};

/// The longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Todo,
    InProgress,
    Done,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Todo => "todo",
            Status::InProgress => "in_progress",
            Status::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "todo" => Some(Status::Todo),
            "in_progress" => Some(Status::InProgress),
            "done" => Some(Status::Done),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Task {
    pub id: i64,
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    pub description: Option<String>,
    pub status: Status,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// The JSON a `POST /tasks` takes (as documented; [`NewTask::from_json`]
/// checks it field by field). Other fields are ignored.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct NewTaskBody {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    description: Option<String>,
    /// Default `todo`.
    #[schema(nullable = false)]
    status: Option<Status>,
}

/// The JSON a `PATCH /tasks/{id}` takes: only the fields given change, and
/// `description: null` clears the description.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TaskPatchBody {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200, nullable = false)]
    title: Option<String>,
    /// `null` clears it.
    description: Option<String>,
    #[schema(nullable = false)]
    status: Option<Status>,
}

/// A checked `POST /tasks` body.
#[derive(Debug, PartialEq, Eq)]
pub struct NewTask {
    pub title: String,
    pub description: Option<String>,
    pub status: Status,
}

/// A checked `PATCH /tasks/{id}` body: `None` leaves a field as it is.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub status: Option<Status>,
}

/// Why a body was refused; the text names the field.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidBody(pub String);

impl NewTask {
    pub fn from_json(body: &[u8]) -> Result<Self, InvalidBody> {
        let object = parse_object(body)?;
        let title = match object.get("title") {
            None => return Err(InvalidBody("field `title` is required".into())),
            Some(value) => title(value)?,
        };
        Ok(NewTask {
            title,
            description: object
                .get("description")
                .map(description)
                .transpose()?
                .flatten(),
            status: object
                .get("status")
                .map(status)
                .transpose()?
                .unwrap_or(Status::Todo),
        })
    }
}

impl TaskPatch {
    pub fn from_json(body: &[u8]) -> Result<Self, InvalidBody> {
        let object = parse_object(body)?;
        Ok(TaskPatch {
            title: object.get("title").map(title).transpose()?,
            description: object.get("description").map(description).transpose()?,
            status: object.get("status").map(status).transpose()?,
        })
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, InvalidBody> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(InvalidBody("the body must be a JSON object".into())),
        Err(e) => Err(InvalidBody(format!("the body is not valid JSON: {e}"))),
    }
}

fn title(value: &Value) -> Result<String, InvalidBody> {
    let Value::String(title) = value else {
        return Err(InvalidBody("field `title` must be a string".into()));
    };
    let chars = title.chars().count();
    if chars == 0 || chars > MAX_TITLE_CHARS {
        return Err(InvalidBody(format!(
            "field `title` must be 1 to {MAX_TITLE_CHARS} characters long"
        )));
    }
    Ok(title.clone())
}

fn description(value: &Value) -> Result<Option<String>, InvalidBody> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(InvalidBody(
            "field `description` must be a string or null".into(),
        )),
    }
}

fn status(value: &Value) -> Result<Status, InvalidBody> {
    value.as_str().and_then(Status::parse).ok_or_else(|| {
        InvalidBody("field `status` must be one of \"todo\", \"in_progress\", \"done\"".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_task_defaults_and_ignored_fields() {
        let task =
            NewTask::from_json(br#"{"title":"t","id":9,"created_at":"x","other":1}"#).unwrap();
        assert_eq!(
            task,
            NewTask {
                title: "t".into(),
                description: None,
                status: Status::Todo
            }
        );
    }

    #[test]
    fn new_task_errors_name_the_field() {
        let cases: [(&[u8], &str); 8] = [
            (b"{}", "title"),
            (br#"{"title":""}"#, "title"),
            (br#"{"title":5}"#, "title"),
            (br#"{"title":null}"#, "title"),
            (br#"{"title":"t","status":"later"}"#, "status"),
            (br#"{"title":"t","description":[]}"#, "description"),
            (b"[1]", "JSON object"),
            (b"{not json", "not valid JSON"),
        ];
        for (body, needle) in cases {
            let err = NewTask::from_json(body).unwrap_err();
            assert!(err.0.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn title_length_counts_characters() {
        let ok = format!(r#"{{"title":"{}"}}"#, "é".repeat(MAX_TITLE_CHARS));
        assert!(NewTask::from_json(ok.as_bytes()).is_ok());
        let long = format!(r#"{{"title":"{}"}}"#, "a".repeat(MAX_TITLE_CHARS + 1));
        assert!(NewTask::from_json(long.as_bytes()).is_err());
    }

    #[test]
    fn patch_distinguishes_absent_from_null() {
        assert_eq!(TaskPatch::from_json(b"{}").unwrap(), TaskPatch::default());
        let clear = TaskPatch::from_json(br#"{"description":null}"#).unwrap();
        assert_eq!(clear.description, Some(None));
        let set = TaskPatch::from_json(br#"{"status":"done","title":"x"}"#).unwrap();
        assert_eq!(set.status, Some(Status::Done));
        assert_eq!(set.title.as_deref(), Some("x"));
        assert!(TaskPatch::from_json(br#"{"title":null}"#).is_err());
    }

    #[test]
    fn status_round_trips() {
        for s in [Status::Todo, Status::InProgress, Status::Done] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
