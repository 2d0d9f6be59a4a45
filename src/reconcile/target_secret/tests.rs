//! The target Secret's rules: its shape, what it records, and the plan of each write.

use super::*;
use crate::api::crd::ConsentTokenSpec;
use crate::reconcile::token_record::{intact_token, read};

#[test]
fn both_selectors_name_the_label_the_operator_writes() {
    // Spelled out (a const cannot be formatted); a change to the label must change them too.
    assert_eq!(MANAGED_SELECTOR, format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    assert_eq!(NOT_MANAGED_SELECTOR, format!("{MANAGED_BY_LABEL}!={MANAGED_BY}"));
}

fn consent_token() -> ConsentToken {
    let mut ct = ConsentToken::new(
        "web",
        serde_json::from_value::<ConsentTokenSpec>(serde_json::json!({
            "fdx": {"baseUrl": "https://x", "customerId": "c", "credentialsSecretRef": {"name": "m"}},
            "target": {"key": "jwt"}
        }))
        .unwrap(),
    );
    ct.metadata.namespace = Some("team".into());
    ct.metadata.uid = Some("uid-1".into());
    ct
}

fn record(token: &Token) -> TokenRecord {
    TokenRecord {
        fingerprint: token.fingerprint(),
        generation: 2,
        credentials_version: "41".into(),
        ..crate::fixtures::record()
    }
}

#[test]
fn desired_secret_is_owned_labelled_and_round_trips_its_record() {
    let ct = consent_token();
    let token = Token::new("a.b.c".into());
    let secret = desired(&ct, &token, &record(&token));
    assert_eq!(secret.metadata.name.as_deref(), Some("web"), "defaults to the resource's name");
    assert!(is_controlled_by(&secret, &ct));
    assert_eq!(secret.labels().get(MANAGED_BY_LABEL).map(String::as_str), Some(MANAGED_BY));
    let summary = SecretSummary::of(&secret);
    assert_eq!(read(&summary, "jwt").unwrap(), record(&token));
    assert_eq!(intact_token(&secret, "jwt", &record(&token)).unwrap().expose(), "a.b.c");
    assert!(matches(&summary, &ct, &record(&token)));
    // The summary keeps no token, only its fingerprint.
    assert_eq!(summary.fingerprint("jwt"), Some(token.fingerprint().as_str()));
    assert!(format!("{summary:?}").find("a.b.c").is_none());
    // No annotation holds the token.
    assert!(secret.annotations().values().all(|v| !v.contains("a.b.c")));
}

fn token_value() -> Token {
    Token::new("a.b.c".into())
}

#[test]
fn edited_token_or_metadata_is_noticed() {
    let ct = consent_token();
    let want = desired(&ct, &token_value(), &record(&token_value()));

    let mut edited = want.clone();
    edited.data.as_mut().unwrap().insert("jwt".into(), ByteString(b"tampered".to_vec()));
    assert!(intact_token(&edited, "jwt", &record(&token_value())).is_none());
    assert!(read(&SecretSummary::of(&edited), "jwt").is_none(), "an edited token is not trusted");

    let mut relabelled = want.clone();
    relabelled.metadata.labels = None;
    assert!(!matches(&SecretSummary::of(&relabelled), &ct, &record(&token_value())));

    let mut foreign = want.clone();
    foreign.metadata.owner_references = None;
    assert!(!is_controlled_by(&foreign, &ct));
    assert!(!SecretSummary::of(&foreign).is_controlled_by(&ct));
    assert!(SecretSummary::of(&want).is_controlled_by(&ct));
}
#[test]
fn a_shaped_target_has_the_users_labels_annotations_and_extra_keys_and_no_other_secret() {
    let mut ct = consent_token();
    ct.spec.target.labels = BTreeMap::from([("backup".into(), "daily".into())]);
    ct.spec.target.annotations = BTreeMap::from([("reloader.stakater.com/match".into(), "true".into())]);
    ct.spec.target.extra_keys = Some(Box::new(crate::api::crd::ExtraKeys {
        expires_at: Some("expires-at".into()),
        refreshed_at: Some("refreshed-at".into()),
        document: Some("token.json".into()),
    }));
    let token = token_value();
    let record = TokenRecord { collection_point_version: Some(3), ..record(&token) };
    let secret = desired(&ct, &token, &record);
    assert_eq!(secret.labels()["backup"], "daily");
    assert_eq!(secret.labels()[MANAGED_BY_LABEL], MANAGED_BY, "the operator's label stays");
    assert_eq!(secret.annotations()["reloader.stakater.com/match"], "true");
    let data = secret.data.as_ref().unwrap();
    let text = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
    assert_eq!(text("expires-at"), record.expires_at.unwrap().to_string());
    assert_eq!(text("refreshed-at"), record.refreshed_at.to_string());
    let fractional =
        TokenRecord { refreshed_at: record.refreshed_at + std::time::Duration::from_millis(250), ..record.clone() };
    let rounded = desired(&ct, &token, &fractional);
    assert_eq!(
        rounded.data.as_ref().unwrap()["refreshed-at"].0,
        record.refreshed_at.to_string().as_bytes(),
        "whole seconds"
    );
    let doc: serde_json::Value = serde_json::from_str(&text("token.json")).unwrap();
    assert_eq!(doc["token"], "a.b.c");
    assert_eq!(doc["collectionPointVersion"], 3);
    let mut fields: Vec<&str> = doc.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(fields, ["collectionPointVersion", "expiresAt", "fingerprint", "refreshedAt", "token"]);
    assert_eq!(data.len(), 4, "token, two facts, the document: nothing else");

    let summary = SecretSummary::of(&secret);
    assert!(matches(&summary, &ct, &record));
    // A new spec (another key set, other labels) no longer matches what is there.
    let mut changed = ct.clone();
    changed.spec.target.extra_keys = None;
    assert!(!matches(&summary, &changed, &record), "extra keys to remove");
    let mut relabelled = ct.clone();
    relabelled.spec.target.labels.insert("tier".into(), "gold".into());
    assert!(!matches(&summary, &relabelled, &record));
    // An edited fact is noticed.
    let mut edited = secret.clone();
    edited.data.as_mut().unwrap().insert("expires-at".into(), ByteString(b"2000-01-01T00:00:00Z".to_vec()));
    assert!(!matches(&SecretSummary::of(&edited), &ct, &record));
}

#[test]
fn what_an_earlier_spec_wrote_and_this_one_does_not_is_removed() {
    let mut before = consent_token();
    before.spec.target.labels = BTreeMap::from([("tier".into(), "gold".into()), ("keep".into(), "x".into())]);
    before.spec.target.annotations = BTreeMap::from([("note".into(), "n".into())]);
    before.spec.target.extra_keys =
        Some(Box::new(crate::api::crd::ExtraKeys { refreshed_at: Some("refreshed-at".into()), ..Default::default() }));
    let token = token_value();
    let mut live = desired(&before, &token, &record(&token));
    // Someone else's label is never touched.
    live.metadata.labels.as_mut().unwrap().insert("theirs".into(), "y".into());
    assert_eq!(leftovers(&SecretSummary::of(&live), &desired(&before, &token, &record(&token))), None);

    let mut after = before.clone();
    after.spec.target.labels.remove("tier");
    after.spec.target.annotations.clear();
    after.spec.target.extra_keys = None;
    let patch = leftovers(&SecretSummary::of(&live), &desired(&after, &token, &record(&token))).unwrap();
    assert_eq!(
        patch,
        serde_json::json!({"metadata": {"labels": {"tier": null}, "annotations": {"note": null}},
                           "data": {"refreshed-at": null}})
    );
    // A new token key: the old key (and its token) goes.
    let mut rekeyed = before.clone();
    rekeyed.spec.target.key = Some("token2".into());
    let patch = leftovers(&SecretSummary::of(&live), &desired(&rekeyed, &token, &record(&token))).unwrap();
    assert_eq!(patch["data"]["jwt"], serde_json::Value::Null);
}

#[test]
fn a_write_creates_where_there_is_nothing_and_applies_with_the_uid_over_ours() {
    let (ct, token) = (consent_token(), token_value());
    let wanted = desired(&ct, &token, &record(&token));
    assert!(plan_write(None, wanted.clone()) == WritePlan::Create(wanted.clone()));
    let mut live = wanted.clone();
    live.metadata.uid = Some("secret-uid".into());
    let WritePlan::Apply { removal, secret } = plan_write(Some(&SecretSummary::of(&live)), wanted.clone()) else {
        panic!("ours: an apply");
    };
    assert_eq!(removal, None, "nothing an earlier spec wrote");
    assert_eq!(secret.metadata.uid.as_deref(), Some("secret-uid"), "the uid is the precondition");
    live.metadata.labels.get_or_insert_default().insert("team".into(), "a".into());
    live.metadata
        .annotations
        .get_or_insert_default()
        .insert(WRITTEN.into(), "labels=team;annotations=;data=jwt".into());
    let WritePlan::Apply { removal: Some(removal), .. } = plan_write(Some(&SecretSummary::of(&live)), wanted) else {
        panic!("a label an earlier spec wrote is removed first");
    };
    assert_eq!(removal["metadata"]["labels"]["team"], serde_json::Value::Null);
    assert_eq!(removal["metadata"]["uid"], "secret-uid");
}

#[test]
fn a_secret_a_deleted_consent_token_left_changes_owner_before_the_apply() {
    let (ct, token) = (consent_token(), token_value());
    let wanted = desired(&ct, &token, &record(&token));
    let mut left = wanted.clone();
    left.metadata.uid = Some("secret-uid".into());
    left.metadata.owner_references.as_mut().unwrap()[0].uid = "deleted-predecessor".into();
    let WritePlan::Apply { removal: Some(removal), .. } = plan_write(Some(&SecretSummary::of(&left)), wanted) else {
        panic!("the owner is replaced first");
    };
    let owners = removal["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(owners.len(), 1, "one controller: the new one");
    assert_eq!(owners[0]["uid"], ct.metadata.uid.clone().unwrap().as_str());
    assert_eq!(removal["metadata"]["uid"], "secret-uid", "only over the Secret that was read");
}
