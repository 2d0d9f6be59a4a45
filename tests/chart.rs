//! The Helm chart and the plain manifests: they lint, render, pass server-side dry-run in both
//! modes, and their RBAC lets the operator work exactly where it is granted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

use consent_token_operator::api::crd::{ClusterConsentProvider, ConsentToken};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::ListParams;
use support::operator::{Launch, Operator};

use support::chart::{CHART, FULLNAME, RELEASE, apply, document, helm, helm_output, render, render_refused};

#[tokio::test]
async fn chart_lints_renders_and_passes_server_side_dry_run_in_both_modes() {
    support::install_crds();
    helm(&["lint", "--strict", CHART]);
    let client = support::admin_client().await;
    let release_ns = support::namespace(&client, "cto-system").await;
    let watched_a = support::namespace(&client, "team-a").await;
    let watched_b = support::namespace(&client, "team-b").await;

    let cluster_wide = render(&release_ns, &["networkPolicy.enabled=true", "podDisruptionBudget.enabled=true"]);
    // The operator's own, and the two that extend the built-in view and edit roles.
    assert_eq!(cluster_wide.matches("\nkind: ClusterRole\n").count(), 3);
    assert_eq!(cluster_wide.matches("\nkind: Role\n").count(), 1, "only the leader-election Role");
    apply(&cluster_wide, true);

    let list = format!("watchNamespaces={{{watched_a},{watched_b}}}");
    let scoped = render(&release_ns, &[&list]);
    // Cluster-wide, a namespace-scoped install reads only the cluster-scoped providers and
    // namespace labels (and writes provider status): never a Secret or a ConsentToken.
    assert_eq!(scoped.matches("\nkind: ClusterRole\n").count(), 3);
    let cluster_role = document(&scoped, "ClusterRole", &format!("{FULLNAME}-cluster-providers"));
    assert!(cluster_role.contains("clusterconsentproviders") && cluster_role.contains("namespaces"));
    assert!(!cluster_role.contains("secrets") && !cluster_role.contains("\"consenttokens\""), "{cluster_role}");
    assert_eq!(
        scoped.matches("\nkind: RoleBinding").count(),
        4,
        "one per watched namespace, one for the Lease, one for provider credentials in the release namespace"
    );
    apply(&scoped, true);

    // Monitoring objects need the Prometheus Operator's CRDs to dry-run; they must render.
    let monitoring =
        render(&release_ns, &["metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true"]);
    assert!(monitoring.contains("kind: ServiceMonitor") && monitoring.contains("alert: ConsentTokenExpired"));
    assert!(monitoring.contains("honorLabels: true"), "the ConsentToken's namespace label is kept");
    // Every series names its installation, which the alerts select by.
    let installation = format!("replacement: \"{release_ns}/{FULLNAME}\"");
    assert!(monitoring.contains("targetLabel: installation") && monitoring.contains(&installation), "{monitoring}");
    let elsewhere = render(
        &release_ns,
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.serviceMonitor.namespace=monitoring",
            "metrics.serviceMonitor.scrapeTimeout=10s",
            "metrics.serviceMonitor.relabelings[0].targetLabel=cluster",
            "metrics.serviceMonitor.relabelings[0].replacement=eu-1",
            "metrics.serviceMonitor.metricRelabelings[0].action=drop",
            "metrics.serviceMonitor.metricRelabelings[0].regex=process_.*",
        ],
    );
    let monitor = document(&elsewhere, "ServiceMonitor", FULLNAME);
    for needle in [
        "namespace: monitoring",
        &format!("matchNames: [{release_ns}]"),
        "scrapeTimeout: 10s",
        "targetLabel: installation",
        "targetLabel: cluster",
        "metricRelabelings:",
        "regex: process_.*",
    ] {
        assert!(monitor.contains(needle), "{needle:?} in:\n{monitor}");
    }
    let pods = render(&release_ns, &["metrics.podMonitor.enabled=true"]);
    let pod_monitor = document(&pods, "PodMonitor", FULLNAME);
    assert!(pod_monitor.contains("podMetricsEndpoints:") && pod_monitor.contains(&installation), "{pod_monitor}");
    assert!(!pods.contains("kind: ServiceMonitor"));

    // Values that make no sense are refused by values.schema.json, saying which.
    let wrong = helm_output(&["template", RELEASE, CHART, "--set", "concurrency=0"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("/concurrency"));
    let typo = helm_output(&["template", RELEASE, CHART, "--set", "watchNamespace=a"]);
    assert!(!typo.status.success(), "a misspelt value is refused, not ignored");

    // The plain manifests too. They create their own namespace, which a dry run does not
    // store, so it is created first for real.
    let plain = std::fs::read_to_string(support::repo_root().join("deploy/consent-token-operator.yaml")).unwrap();
    let _ = support::kubectl_output(&["create", "namespace", "consent-token-operator"]);
    apply(&plain, true);
}

/// Each option a platform team reaches for renders as it says and passes the API server's
/// server-side dry run (CRDs, RBAC, the Deployment, the test hook, the dashboard).
#[tokio::test]
async fn every_option_renders_as_it_says_and_passes_server_side_dry_run() {
    support::install_crds();
    let client = support::admin_client().await;
    let release_ns = support::namespace(&client, "cto-options").await;
    let cases: &[(&[&str], &[&str])] = &[
        (&["nameOverride=consent"], &["name: cto-consent\n", "app.kubernetes.io/name: consent\n"]),
        (&["fullnameOverride=tokens"], &["name: tokens\n", "name: tokens-metrics\n"]),
        (&["commonLabels.team=platform"], &["team: platform"]),
        (&["global.imageRegistry=mirror.example"], &["kind: Deployment"]),
        (&["revisionHistoryLimit=5"], &["revisionHistoryLimit: 5"]),
        (&["serviceAccount.automount=false"], &["automountServiceAccountToken: false"]),
        (&["extraArgs={--upstream-timeout=5s}"], &["- --upstream-timeout=5s"]),
        (&["extraEnv[0].name=HTTPS_PROXY", "extraEnv[0].value=ignored"], &["name: HTTPS_PROXY"]),
        (
            &[
                "extraVolumes[0].name=scratch",
                "extraVolumes[0].emptyDir.medium=Memory",
                "extraVolumeMounts[0].name=scratch",
                "extraVolumeMounts[0].mountPath=/scratch",
            ],
            &["mountPath: /scratch", "medium: Memory"],
        ),
        (
            &[
                "topologySpreadConstraints[0].maxSkew=1",
                "topologySpreadConstraints[0].topologyKey=rack",
                "topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule",
            ],
            &["topologyKey: rack", "whenUnsatisfiable: DoNotSchedule"],
        ),
        (&["hostNetwork=true"], &["hostNetwork: true", "dnsPolicy: ClusterFirstWithHostNet"]),
        (
            &[
                "networkPolicy.enabled=true",
                "networkPolicy.egress.providerPorts={443,8443}",
                "networkPolicy.egress.to[0].ipBlock.cidr=10.0.0.0/8",
            ],
            &["port: 8443", "cidr: 10.0.0.0/8"],
        ),
        (
            &["podDisruptionBudget.enabled=true", "replicaCount=3", "podDisruptionBudget.minAvailable=2"],
            &["minAvailable: 2"],
        ),
        (&["replicaCount=1", "leaderElection=false"], &["value: \"false\""]),
        (&["metrics.dashboard.enabled=true"], &["grafana_dashboard: \"1\"", "consent_token_ready"]),
        (&["crds.keep=false"], &["kind: CustomResourceDefinition"]),
        (&["deploymentAnnotations.example\\.com/owner=platform"], &["example.com/owner: platform"]),
        (
            &[
                "livenessProbe.periodSeconds=20",
                "livenessProbe.timeoutSeconds=3",
                "readinessProbe.initialDelaySeconds=2",
            ],
            &["periodSeconds: 20", "timeoutSeconds: 3", "initialDelaySeconds: 2", "path: /healthz", "path: /readyz"],
        ),
        (
            &[
                "networkPolicy.enabled=true",
                "networkPolicy.ingress.from[0].namespaceSelector.matchLabels.team=monitoring",
            ],
            &["from:", "team: monitoring"],
        ),
        (
            &[
                "extraObjects[0].apiVersion=v1",
                "extraObjects[0].kind=ConfigMap",
                "extraObjects[0].metadata.name=extra-settings",
            ],
            &["kind: ConfigMap\nmetadata:\n  name: extra-settings"],
        ),
        (&["nodeSelector.disktype=ssd"], &["disktype: ssd"]),
        (
            &["upstream.httpsProxy=http://proxy.corp:3128", "upstream.noProxy=internal.bank"],
            &[
                "name: CONSENT_HTTPS_PROXY\n              value: \"http://proxy.corp:3128\"",
                "name: CONSENT_NO_PROXY\n              value: \"internal.bank\"",
            ],
        ),
        (
            &["upstream.httpsProxy=proxy.corp:3128", "upstream.proxyCredentialsSecret=proxy-credentials"],
            &[
                "name: CONSENT_HTTPS_PROXY_USERNAME\n              valueFrom:\n                secretKeyRef:\n                  name: proxy-credentials\n                  key: username",
                "name: CONSENT_HTTPS_PROXY_PASSWORD\n              valueFrom:\n                secretKeyRef:\n                  name: proxy-credentials\n                  key: password",
            ],
        ),
        // The NetworkPolicy lets the operator reach the proxy's port.
        (&["networkPolicy.enabled=true", "upstream.httpsProxy=http://10.0.0.9:3128"], &["{port: 3128, protocol: TCP}"]),
    ];
    for (sets, needles) in cases {
        let rendered = render(&release_ns, sets);
        for needle in *needles {
            assert!(rendered.contains(needle), "{sets:?}: {needle:?} missing");
        }
        apply(&rendered, true);
    }

    // The defaults: CRDs upgraded with the chart and kept on uninstall, a helm test hook that
    // asks /readyz through the Service, replicas spread over nodes and zones.
    let defaults = render(&release_ns, &[]);
    assert_eq!(defaults.matches("\nkind: CustomResourceDefinition\n").count(), 3);
    assert_eq!(defaults.matches("helm.sh/resource-policy: keep").count(), 3);
    let test_pod = document(&defaults, "Pod", &format!("{FULLNAME}-test-readyz"));
    assert!(
        test_pod.contains("helm.sh/hook: test")
            && test_pod.contains(&format!("{FULLNAME}-metrics.{release_ns}:8080/readyz"))
    );
    assert!(
        defaults.contains("topologyKey: kubernetes.io/hostname")
            && defaults.contains("topologyKey: topology.kubernetes.io/zone")
    );
    assert!(!render(&release_ns, &["crds.keep=false"]).contains("resource-policy"));
    assert!(!render(&release_ns, &["crds.enabled=false"]).contains("kind: CustomResourceDefinition"));
    assert!(!render(&release_ns, &["topologySpread.enabled=false"]).contains("topologySpreadConstraints"));
    let no_account = render(&release_ns, &["serviceAccount.create=false", "serviceAccount.name=existing"]);
    assert!(!no_account.contains("\nkind: ServiceAccount\n") && no_account.contains("serviceAccountName: existing"));
    assert!(!render(&release_ns, &["rbac.aggregateToDefaultRoles=false"]).contains("aggregate-to-view"));
    // Linux nodes by default (the image's OS), whatever the cluster also runs.
    assert!(render(&release_ns, &[]).contains("nodeSelector:\n        kubernetes.io/os: linux"));
    // A release pins its image by digest; the tag stays the appVersion, as people read it.
    let digest = format!("sha256:{}", "ab".repeat(32));
    let pinned = render(&release_ns, &[&format!("image.digest={digest}")]);
    let image = format!("image: \"ghcr.io/consent-dev/consent-token-operator:{}@{digest}\"", env!("CARGO_PKG_VERSION"));
    assert!(pinned.contains(&image), "{image} in:\n{pinned}");
}

#[tokio::test]
async fn contradictory_values_are_refused_saying_what_to_change() {
    let two_writers = render_refused(&["leaderElection=false"]);
    assert!(two_writers.contains("replicaCount=2 with leaderElection=false would run 2 writers"), "{two_writers}");
    let blocks_drains = render_refused(&["podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=2"]);
    assert!(blocks_drains.contains("would block every node drain"), "{blocks_drains}");
    let all = render_refused(&["podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=100%"]);
    assert!(all.contains("would block every node drain"), "{all}");
    let no_name = render_refused(&["serviceAccount.create=false"]);
    assert!(no_name.contains("serviceAccount.name"), "{no_name}");
    let bad_port = render_refused(&["networkPolicy.egress.providerPorts={0}"]);
    assert!(bad_port.contains("providerPorts"), "{bad_port}");
    let twice = render_refused(&["metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true"]);
    assert!(twice.contains("would scrape every replica twice"), "{twice}");
    let credentials_in_url = render_refused(&["upstream.httpsProxy=http://user:password@proxy.corp:3128"]);
    assert!(credentials_in_url.contains("/upstream/httpsProxy"), "{credentials_in_url}");
    let not_a_digest = render_refused(&["image.digest=latest"]);
    assert!(not_a_digest.contains("/image/digest"), "{not_a_digest}");
}

/// The chart configures the operator through variables; each is one the binary reads (a
/// renamed flag would otherwise be silently ignored).
#[tokio::test]
async fn every_variable_the_chart_sets_is_one_the_operator_reads() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_consent-token-operator")).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let rendered = render(
        "cto",
        &[
            "extraCABundle.configMapName=ca",
            "upstream.httpsProxy=http://proxy:3128",
            "upstream.proxyCredentialsSecret=p",
        ],
    );
    let deployment = document(&rendered, "Deployment", FULLNAME);
    let set: Vec<&str> = deployment.lines().filter_map(|l| l.trim().strip_prefix("- name: CONSENT_")).collect();
    assert!(set.len() >= 20, "{set:?}");
    for name in set {
        // A variable whose value is secret is named without its value: `[env: NAME]`.
        let read = help.contains(&format!("[env: CONSENT_{name}=")) || help.contains(&format!("[env: CONSENT_{name}]"));
        assert!(read, "CONSENT_{name} is not read by the operator");
    }
}

#[tokio::test]
async fn hardened_defaults_are_rendered() {
    let rendered = render("cto", &[]);
    for needle in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "- ALL",
        "type: RuntimeDefault",
        "path: /healthz",
        "path: /readyz",
        "memory: 128Mi",
    ] {
        assert!(rendered.contains(needle), "missing {needle:?}");
    }
}

#[tokio::test]
async fn the_operator_with_the_charts_rbac_works_where_granted_and_is_refused_elsewhere() {
    let setup = support::operator::TestEnv::setup("cto-rbac", &["granted", "other"]).await;
    let (admin, release_ns) = (setup.client.clone(), setup.namespace.clone());
    let [granted, other] = [0, 1].map(|i| setup.other_namespaces[i].clone());
    apply(&render(&release_ns, &[&format!("watchNamespaces={{{granted}}}")]), false);

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = support::kubeconfig_as(&release_ns, FULLNAME, dir.path()).await;
    let as_operator = support::client_as(&release_ns, FULLNAME).await;

    // Refused outside the granted namespace, and cluster-wide.
    for api in [Api::<Secret>::namespaced(as_operator.clone(), &other), Api::<Secret>::all(as_operator.clone())] {
        let err = api.list(&ListParams::default()).await.expect_err("refused");
        assert!(matches!(err, kube::Error::Api(ref s) if s.code == 403), "{err}");
    }

    // The built-in roles now cover ConsentTokens (kube-controller-manager aggregates the chart's
    // ClusterRoles into them): a namespace viewer may list them and not create one; an editor may.
    for (account, role) in [("viewer", "view"), ("editor", "edit")] {
        support::kubectl(&[
            "create",
            "rolebinding",
            account,
            "-n",
            &granted,
            &format!("--clusterrole={role}"),
            &format!("--serviceaccount={granted}:{account}"),
        ]);
    }
    let viewer: Api<ConsentToken> = Api::namespaced(support::client_as(&granted, "viewer").await, &granted);
    support::eventually("view to include ConsentTokens", Duration::from_secs(30), || async {
        viewer.list(&ListParams::default()).await.ok()
    })
    .await;
    let token: ConsentToken = serde_json::from_value(serde_json::json!({
        "apiVersion": "consent.dev/v1alpha1", "kind": "ConsentToken", "metadata": {"name": "by-editor"},
        "spec": {"fdx": {"baseUrl": "https://consent.bank.example", "customerId": "c",
                 "credentialsSecretRef": {"name": "mx-credentials"}}}
    }))
    .unwrap();
    let err = viewer.create(&Default::default(), &token).await.expect_err("a viewer may not create");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 403), "{err}");
    let editor: Api<ConsentToken> = Api::namespaced(support::client_as(&granted, "editor").await, &granted);
    support::eventually("edit to include ConsentTokens", Duration::from_secs(30), || async {
        editor.create(&Default::default(), &token).await.ok()
    })
    .await;
    editor.delete("by-editor", &Default::default()).await.unwrap();

    // Works in the granted namespace, end to end, with leader election in its own namespace.
    setup.fake.add_fdx_client("mx-client", "mx-secret-value");
    let launch = Launch { kubeconfig: kubeconfig.clone(), namespace: Some(granted.clone()), ..setup.launch_defaults() };
    let mut env = setup.launch(launch).await;
    env.namespace = granted.clone();
    env.put_secret("mx-credentials", &[("client_id", "mx-client"), ("client_secret", "mx-secret-value")]).await;
    env.create_token(
        "mx",
        serde_json::json!({"fdx": {"baseUrl": env.fake.base_url(), "customerId": "c",
            "credentialsSecretRef": {"name": "mx-credentials"}}}),
    )
    .await;
    env.wait_for_ready("mx", "True", "TokenValid").await;

    // A ClusterConsentProvider with its credentials in the release namespace works under the
    // same RBAC: the provider-credentials Role, the cluster-scoped reads, its status written.
    env.namespace = release_ns.clone();
    env.put_secret("shared-mx", &[("client_id", "mx-client"), ("client_secret", "mx-secret-value")]).await;
    env.namespace = granted.clone();
    let name = format!("shared-{}", &release_ns[9..]);
    let providers: Api<ClusterConsentProvider> = Api::all(admin.clone());
    let provider: ClusterConsentProvider = serde_json::from_value(serde_json::json!({
        "apiVersion": "consent.dev/v1alpha1", "kind": "ClusterConsentProvider", "metadata": {"name": name},
        "spec": {"fdx": {"baseUrl": env.fake.base_url(), "credentialsSecretRef": {"name": "shared-mx"}},
                 "allowedNamespaces": {"names": [granted]}}
    }))
    .unwrap();
    providers.create(&Default::default(), &provider).await.unwrap();
    env.create_token(
        "via-cluster-provider",
        serde_json::json!({"providerRef": {"kind": "ClusterConsentProvider", "name": name}, "customerId": "c2"}),
    )
    .await;
    env.wait_for_ready("via-cluster-provider", "True", "TokenValid").await;
    support::eventually("the cluster provider's status", Duration::from_secs(30), || async {
        let status = providers.get(&name).await.ok()?.status?;
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.reason == "CredentialsValid" && status.consent_tokens == 1).then_some(())
    })
    .await;
    providers.delete(&name, &Default::default()).await.unwrap();

    // Pointed at a namespace it was not granted, the same identity never gets ready.
    // It tried (and was refused: its log says so) before we look at its readiness.
    let launch = Launch { kubeconfig, lease_namespace: release_ns.clone(), ..Launch::new(&other, env.fake.ca_pem()) };
    let refused = Operator::spawn(launch.args(&["--leader-election", "false"]));
    support::eventually("the refused operator to be refused", Duration::from_secs(30), || async {
        let logs = refused.logs();
        (logs.contains("403") || logs.to_lowercase().contains("forbidden")).then_some(())
    })
    .await;
    assert_eq!(refused.readyz().await, Some(503), "answers, and is not ready");
}
