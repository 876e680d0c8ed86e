//! Templates (`templates/`, embedded in the binary) rendered with
//! minijinja, and the one error of rendering. Each step renders its own
//! files with them and lists them in `StepInfo::rendered` (what `render` writes).

use include_dir::{Dir, include_dir};
use minijinja::Environment;

static TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// A template that failed to render.
#[derive(Debug, thiserror::Error)]
#[error("cannot render template `{name}`: {source}")]
pub struct RenderError {
    pub name: String,
    #[source]
    pub source: minijinja::Error,
}

impl RenderError {
    /// What the operator can do about it.
    pub fn hint(&self) -> String {
        "check the profile's values that the template uses (`stackinstall render` shows the files)"
            .into()
    }
}

/// Renders `templates/<name>` with `values`.
pub fn template(name: &str, values: impl serde::Serialize) -> Result<String, RenderError> {
    let error = |source| RenderError {
        name: name.into(),
        source,
    };
    let mut environment = Environment::new();
    environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    environment.set_keep_trailing_newline(true);
    // `{{ value | quoted }}`: a YAML double-quoted scalar (JSON's string
    // syntax is YAML's), so no value can end its line or start another key.
    environment.add_filter("quoted", |value: String| {
        serde_json::to_string(&value).expect("strings serialize")
    });
    let text = TEMPLATES
        .get_file(name)
        .and_then(|file| file.contents_utf8())
        .ok_or_else(|| {
            error(minijinja::Error::new(
                minijinja::ErrorKind::TemplateNotFound,
                "not embedded",
            ))
        })?;
    environment.add_template(name, text).map_err(error)?;
    environment
        .get_template(name)
        .and_then(|t| t.render(values))
        .map_err(error)
}
