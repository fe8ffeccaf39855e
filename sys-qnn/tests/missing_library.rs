//! Missing library: its own test binary, so no other test has loaded `libQnnHtp.so` into the
//! process (the system loader would otherwise find the loaded copy by its bare name).

use std::path::PathBuf;

use sys_qnn::{LibrarySearch, LoadError, QnnLibrary, HTP_LIBRARY};

#[test]
fn missing_library_lists_every_path_tried() {
    let search = LibrarySearch {
        explicit: Some(PathBuf::from("/nonexistent/qnn")),
        native_library_dir: None,
        ignore_env: true,
    };
    let err = match QnnLibrary::open_with(&search) {
        Ok(lib) => {
            // Only possible if the system loader path holds a QNN library.
            eprintln!("SKIPPED: the system loader found {}", lib.path().display());
            return;
        }
        Err(err) => err,
    };
    let LoadError::NotFound { tried, .. } = &err else {
        panic!("expected NotFound, got {err}");
    };
    assert_eq!(
        tried[0].0,
        PathBuf::from("/nonexistent/qnn").join(HTP_LIBRARY)
    );
    assert_eq!(tried[0].1, "no such file");
    assert_eq!(tried.last().unwrap().0, PathBuf::from(HTP_LIBRARY));
    assert!(tried.last().unwrap().1.starts_with("system loader"));
    let text = err.to_string();
    for (path, _) in tried {
        assert!(text.contains(&path.display().to_string()), "{text}");
    }
    eprintln!("{text}");
}
