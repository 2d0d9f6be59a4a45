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

/// A Secret another tool wrote, offered to `web` by its owner.
fn offered(other_keys: Option<&str>) -> Secret {
    let mut annotations = BTreeMap::from([(ADOPT_BY.to_owned(), "web".to_owned())]);
    if let Some(mode) = other_keys {
        annotations.insert(ADOPT_OTHER_KEYS.to_owned(), mode.to_owned());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("team".into()),
            resource_version: Some("77".into()),
            labels: Some(BTreeMap::from([("app".to_owned(), "web".to_owned())])),
            annotations: Some(annotations),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("jwt".to_owned(), ByteString(b"old.token.value".to_vec())),
            ("endpoint".to_owned(), ByteString(b"https://consent.example".to_vec())),
        ])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

#[test]
fn only_the_owners_annotation_naming_this_consent_token_offers_a_secret() {
    let ct = consent_token();
    let annotations = |secret: &Secret| secret.annotations().clone();
    let of = |a: BTreeMap<String, String>| Offer::of(|k| a.get(k).map(String::as_str), &ct);
    assert_eq!(of(annotations(&offered(None))), Some(Offer { keep_other_keys: true }));
    assert_eq!(of(annotations(&offered(Some("drop")))), Some(Offer { keep_other_keys: false }));
    let mut to_another = annotations(&offered(None));
    to_another.insert(ADOPT_BY.into(), "other".into());
    assert_eq!(of(to_another), None);
    assert_eq!(of(BTreeMap::new()), None);
}

#[test]
fn a_takeover_writes_the_token_and_ownership_in_one_patch_keeping_or_dropping_other_keys() {
    let ct = consent_token();
    let token = Token::new("new.token.value".into());
    let wanted = desired(&ct, &token, &record(&token));
    let keep = takeover(&offered(None), wanted.clone(), Offer { keep_other_keys: true }).unwrap();
    assert_eq!(keep["metadata"]["resourceVersion"], "77", "refused if the Secret changed since it was read");
    assert_eq!(keep["data"]["jwt"], serde_json::to_value(ByteString(b"new.token.value".to_vec())).unwrap());
    assert!(keep["data"].get("endpoint").is_none(), "kept as it is");
    assert_eq!(keep["metadata"]["annotations"][KEPT_KEYS], "endpoint");
    assert!(keep["metadata"]["annotations"][ADOPT_BY].is_null(), "the offer is consumed");
    assert_eq!(keep["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY);
    assert_eq!(keep["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(keep["metadata"]["ownerReferences"][0]["controller"], true);
    let drop = takeover(&offered(Some("drop")), wanted.clone(), Offer { keep_other_keys: false }).unwrap();
    assert!(drop["data"]["endpoint"].is_null() && drop["data"].get("endpoint").is_some(), "removed in the same write");
    assert!(drop["metadata"]["annotations"].get(KEPT_KEYS).is_none());

    // Afterwards the Secret matches the spec, the kept key included: nothing to put back.
    let mut after = offered(None);
    after.metadata.labels = wanted.metadata.labels.clone();
    let mut annotations = wanted.metadata.annotations.clone().unwrap();
    annotations.insert(KEPT_KEYS.into(), "endpoint".into());
    after.metadata.annotations = Some(annotations);
    after.metadata.owner_references = wanted.metadata.owner_references.clone();
    after.data.as_mut().unwrap().insert("jwt".into(), ByteString(b"new.token.value".to_vec()));
    assert!(matches(&SecretSummary::of(&after), &ct, &record(&token)));
}

#[test]
fn secrets_that_cannot_take_a_token_are_not_taken_over() {
    let ct = consent_token();
    let token = Token::new("new.token.value".into());
    let wanted = desired(&ct, &token, &record(&token));
    let typed = Secret { type_: Some("kubernetes.io/dockerconfigjson".into()), ..offered(None) };
    let err = takeover(&typed, wanted.clone(), Offer { keep_other_keys: true }).unwrap_err();
    assert!(err.to_string().contains("only Opaque Secrets"), "{err}");
    let frozen = Secret { immutable: Some(true), ..offered(None) };
    assert!(takeover(&frozen, wanted, Offer { keep_other_keys: true }).unwrap_err().to_string().contains("immutable"));
}
