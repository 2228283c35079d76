//! Native tests of the walkthrough's map, kept apart from its source so that
//! `src/lib.rs` stays exactly the code the blog post shows.

use fluvio_smartmodule::Record;

#[test]
fn scrubs_the_walkthrough_record() {
    let input = r#"{"social_security_number":"123-45-6789","event_type":"account-created","account_id":"1509aaf8-5863-4b41-bfe2-b081691d7a6e","first_name":"Daniel","last_name":"Mahoney","email":"","password_hash":"db6b535bc9909ecfb7c2ee4550ed7b350a61785e"}"#;
    let (key, value) = regex_scrubbing::map(&Record::new(input)).unwrap();
    assert!(key.is_none());
    let value = value.to_string();
    assert!(value.contains(r#""social_security_number":"***-**-****""#), "{value}");
    assert!(!value.contains("123-45-6789"));
    assert!(value.contains("1509aaf8-5863-4b41-bfe2-b081691d7a6e"), "non-SSN digits are kept: {value}");
}
