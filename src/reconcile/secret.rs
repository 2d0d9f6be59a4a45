//! The target Secret's I/O: reading it (from the cache of owned Secrets, or the API server),
//! creating it, applying it, and putting it back after someone edited it. What it should look
//! like is decided by [`target_secret`], a pure module.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{GetParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};

use crate::api::annotations::{MANAGED_BY, MANAGED_BY_LABEL, WRITTEN};
use crate::api::crd::{ConsentToken, ConsentTokenStatus};
use crate::basics::object_id::ObjectId;
use crate::cache::secret_summary::SecretSummary;
use crate::error::Error;
use crate::reconcile::api_writes::FIELD_MANAGER;
use crate::reconcile::context::Context;
use crate::reconcile::target_secret::{self, Offer, WritePlan};
use crate::reconcile::token_record::{self, TokenRecord};

/// The target Secret as the reconcile finds it.
pub enum Target {
    Missing,
    /// A Secret of that name this ConsentToken does not control: never overwritten.
    Foreign,
    /// Someone else's Secret whose owner offers it to this ConsentToken (`consent.dev/adopt-by`):
    /// the next token is written into it, taking it over in the same write.
    Offered,
    /// Summarized: no token in it. Shared with the cache when it came from there.
    Ours(Arc<SecretSummary>),
}

impl Target {
    /// The facts of the intact token in it under `key`, if there is one.
    pub fn record(&self, key: &str) -> Option<TokenRecord> {
        match self {
            Self::Ours(secret) => token_record::read(secret, key),
            Self::Missing | Self::Foreign | Self::Offered => None,
        }
    }
}

/// Finds the target Secret: in the complete cache of labelled Secrets, else (absent, foreign,
/// or ours with the label removed) with one read.
pub async fn observe(ct: &ConsentToken, ctx: &Context, previous: &ConsentTokenStatus) -> Result<Target, Error> {
    let namespace = ct.namespace().unwrap_or_default();
    let name = ct.target_secret_name();
    let secret = match ctx.caches.owned_secrets.get(&namespace, &name) {
        Some(cached) => Some(cached),
        // For a new object (no token yet) whose name no Secret of someone else's has (as far as
        // the watch of all Secrets knows), there is nothing to read: the create that follows
        // refuses if one appeared meanwhile. Else a metadata read from the API server's watch
        // cache tells, before a token is fetched. Where a Secret of ours was expected, it is read
        // in full (its token may still be good).
        None => {
            let api = Api::<Secret>::namespaced(ctx.kube.client.clone(), &namespace);
            // A status that ever described a token records its credentials version.
            let expected = previous.credentials_version.is_some() || previous.token_fingerprint.is_some();
            let read = if !expected && ctx.caches.secret_names.taken(&namespace, &name) == Some(false) {
                None
            } else if expected {
                api.get_opt(&name).await?
            } else {
                match api.get_metadata_opt_with(&name, &GetParams::any()).await? {
                    Some(meta) if target_secret::is_controlled_by(&meta, ct) => api.get_opt(&name).await?,
                    Some(meta) => return Ok(foreign(|k| meta.annotations().get(k).map(String::as_str), ct)),
                    None => None,
                }
            };
            read.map(|secret| Arc::new(SecretSummary::of(&secret)))
        }
    };
    Ok(match secret {
        None => Target::Missing,
        Some(secret) if secret.is_controlled_by(ct) => Target::Ours(secret),
        Some(secret) if left_by_a_deleted_consent_token(&secret, ctx) => {
            tracing::info!(
                namespace = ct.namespace(),
                name = ct.name_any(),
                secret = secret.name(),
                "taking over the Secret a deleted ConsentToken left"
            );
            Target::Ours(secret)
        }
        Some(secret) => foreign(|k| secret.annotation(k), ct),
    })
}

/// Someone else's Secret: offered to `ct` by its owner's annotation, or not to be touched.
fn foreign<'a>(annotation: impl Fn(&str) -> Option<&'a str>, ct: &ConsentToken) -> Target {
    if Offer::of(annotation, ct).is_some() { Target::Offered } else { Target::Foreign }
}

/// A Secret of ours (labelled so, and with the keys it wrote recorded) whose controller is no
/// watched ConsentToken: it belonged to
/// one that was deleted (a ConsentToken replaced with `kubectl replace --force`, or one that held
/// this name before), and the garbage collector is about to delete it. Taken over, it keeps its
/// token where pods read it instead of disappearing until the new object writes one. The cache
/// of ConsentTokens is complete here (reconciles start once it is listed), and a uid is never
/// reused, so a controller missing from it is gone for good.
fn left_by_a_deleted_consent_token(secret: &SecretSummary, ctx: &Context) -> bool {
    secret.label(MANAGED_BY_LABEL) == Some(MANAGED_BY)
        && secret.annotation(WRITTEN).is_some()
        && secret.controller().is_some_and(|controller| !ctx.caches.tokens.contains(ObjectId::of(controller)))
}

/// Writes `desired` (holding a new token) where `target` says: applied over our own Secret,
/// created where there is none.
pub async fn write(ct: &ConsentToken, ctx: &Context, target: &Target, desired: Secret) -> Result<(), Error> {
    let current = match target {
        Target::Ours(current) => Some(current.as_ref()),
        Target::Offered => return adopt(ct, ctx, desired).await,
        Target::Missing | Target::Foreign => None,
    };
    send(ct, ctx, target_secret::plan_write(current, desired)).await
}

/// Takes over the Secret its owner offered, writing `desired` (a new token) into it in one
/// write: the key the pods read goes from the old token to the new one, never absent. The
/// offer is read again first; withdrawn meanwhile, it is a conflict again. A merge patch, the
/// verb the operator has on Secrets anyway, carrying the resourceVersion read.
async fn adopt(ct: &ConsentToken, ctx: &Context, desired: Secret) -> Result<(), Error> {
    let namespace = ct.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.kube.client.clone(), &namespace);
    let name = ct.target_secret_name();
    let Some(existing) = api.get_opt(&name).await? else {
        return send(ct, ctx, WritePlan::Create(desired)).await;
    };
    if target_secret::is_controlled_by(&existing, ct) {
        let plan = target_secret::plan_write(Some(&SecretSummary::of(&existing)), desired);
        return send(ct, ctx, plan).await;
    }
    let Some(offer) = Offer::of(|k| existing.annotations().get(k).map(String::as_str), ct) else {
        return Err(conflict(ct));
    };
    let takeover = target_secret::takeover(&existing, desired, offer)?;
    ctx.kube.api_writes.permit(&namespace).await;
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    api.patch(&name, &params, &Patch::Merge(&takeover)).await?;
    tracing::info!(
        namespace,
        name = ct.name_any(),
        secret = name,
        keep_other_keys = offer.keep_other_keys,
        "took over the Secret its owner offered"
    );
    Ok(())
}

/// Reshapes the Secret when the spec's target changed (labels, annotations, extra keys) and
/// puts back what someone else changed (an edited token is not intact, so a new one is fetched
/// instead), keeping the token. `target` is the Secret as cached (a summary): the token itself
/// is read from the API server only when something has to be written.
pub async fn repair(ct: &ConsentToken, ctx: &Context, target: &Target, record: &TokenRecord) -> Result<(), Error> {
    let Target::Ours(summary) = target else { return Ok(()) };
    // The Secret records the spec generation it was last written for.
    let record = &TokenRecord { generation: ct.meta().generation.unwrap_or_default(), ..record.clone() };
    if target_secret::matches(summary, ct, record) {
        return Ok(());
    }
    tracing::info!(namespace = ct.namespace(), name = ct.name_any(), "target Secret differs from the spec; writing it");
    let api = Api::<Secret>::namespaced(ctx.kube.client.clone(), &ct.namespace().unwrap_or_default());
    let secret = api.get_opt(&ct.target_secret_name()).await?;
    // Gone or its token edited meanwhile: the watch event that follows triggers a new token.
    if let Some(secret) = secret
        && let Some(token) = token_record::intact_token(&secret, ct.target_key(), record)
    {
        let plan =
            target_secret::plan_write(Some(&SecretSummary::of(&secret)), target_secret::desired(ct, &token, record));
        send(ct, ctx, plan).await?;
    }
    Ok(())
}

/// Sends what `plan` says. A create that finds a Secret of that name reads it: ours after all
/// (the label was removed, or our own create is not in the cache yet) is applied over, anyone
/// else's is a `TargetConflict`.
async fn send(ct: &ConsentToken, ctx: &Context, plan: WritePlan) -> Result<(), Error> {
    let namespace = ct.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.kube.client.clone(), &namespace);
    match plan {
        WritePlan::Create(desired) => {
            let name = desired.metadata.name.clone().unwrap_or_default();
            ctx.kube.api_writes.permit(&namespace).await;
            let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
            match api.create(&params, &desired).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.is_already_exists() => match api.get_opt(&name).await? {
                    Some(existing) if target_secret::is_controlled_by(&existing, ct) => {
                        let plan = target_secret::plan_write(Some(&SecretSummary::of(&existing)), desired);
                        Box::pin(send(ct, ctx, plan)).await
                    }
                    _ => Err(conflict(ct)),
                },
                Err(err) => Err(err.into()),
            }
        }
        WritePlan::Apply { removal, secret } => {
            let name = secret.metadata.name.clone().unwrap_or_default();
            if let Some(removal) = removal {
                ctx.kube.api_writes.permit(&namespace).await;
                let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
                api.patch(&name, &params, &Patch::Merge(removal)).await.map_err(|err| replaced(err, ct))?;
            }
            ctx.kube.api_writes.permit(&namespace).await;
            api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&secret))
                .await
                .map_err(|err| replaced(err, ct))?;
            Ok(())
        }
    }
}

/// A write refused because the Secret's uid is not the one it was believed to have: it was
/// deleted (and perhaps recreated by someone else) since it was read.
fn replaced(err: kube::Error, ct: &ConsentToken) -> Error {
    match &err {
        kube::Error::Api(status) if (status.code == 409 || status.code == 422) && status.message.contains("uid") => {
            conflict(ct)
        }
        _ => err.into(),
    }
}

/// The target name is held by a Secret this ConsentToken may not write.
pub fn conflict(ct: &ConsentToken) -> Error {
    Error::TargetConflict { secret: ct.target_secret_name(), consent_token: ct.name_any() }
}

/// Deletes Secrets this ConsentToken created under an earlier `spec.target.secretName`: the
/// old name would otherwise keep a live token nobody renews. Looked for only after a spec
/// change or when the target Secret was created for an object that had a token (a scan of the
/// cache), each deleted with its uid as precondition.
pub async fn delete_renamed(ct: &ConsentToken, ctx: &Context) -> Result<(), Error> {
    let current = ct.target_secret_name();
    let namespace = ct.namespace().unwrap_or_default();
    let renamed: Vec<Arc<SecretSummary>> = ctx
        .caches
        .owned_secrets
        .in_namespace(&namespace)
        .into_iter()
        .filter(|s| s.name() != current && s.is_controlled_by(ct))
        .collect();
    let api = Api::<Secret>::namespaced(ctx.kube.client.clone(), &namespace);
    for secret in renamed {
        tracing::info!(
            namespace,
            name = ct.name_any(),
            secret = secret.name(),
            "deleting the Secret of an earlier target name"
        );
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: secret.uid().map(str::to_owned),
                resource_version: None,
            }),
            ..Default::default()
        };
        ctx.kube.api_writes.permit(&namespace).await;
        match api.delete(secret.name(), &params).await {
            Ok(_) => {}
            // Gone already, or replaced by someone else's: not ours to delete.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}
