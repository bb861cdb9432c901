//! The routing tree, time intervals and inhibition as a configuration file sets them up:
//! each test starts from YAML (the routing sections alone, or a whole configuration file) and
//! asserts what an alert's labels lead to.

use tocsin::labels::Labels;
use tocsin::notify::route::{
    GroupBy, Inhibitor, RouteErrorKind, RouteMatch, Router, Routing, RoutingConfig, TimeIntervals,
};
use tocsin::timefmt::parse_time;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn routing(yaml: &str) -> Routing {
    let cfg = RoutingConfig::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
    Routing::new(&cfg).unwrap_or_else(|e| panic!("{e}"))
}

/// The (path, message) of every error the YAML produces.
fn errors(yaml: &str) -> Vec<(String, String)> {
    let cfg = RoutingConfig::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
    match Routing::new(&cfg) {
        Ok(_) => panic!("expected errors"),
        Err(e) => {
            e.0.into_iter()
                .map(|e| (e.path, e.kind.to_string()))
                .collect()
        }
    }
}

fn receivers(r: &Routing, pairs: &[(&str, &str)]) -> Vec<String> {
    r.router.route_test(&labels(pairs))
}

fn at(rfc3339: &str) -> i64 {
    parse_time(rfc3339).unwrap()
}

/// The example of `shared/design.md` (Configuration), routing part.
const DESIGN_EXAMPLE: &str = r#"
storage: { path: data/tocsin.db, retention: 15d }
route:   { receiver: ops, group_by: [alertname, service], group_wait: 30s, group_interval: 5m, repeat_interval: 4h,
           routes: [ { matchers: ['severity="page"'], receiver: oncall } ] }
receivers:
  - name: ops
    email:   { to: [a@example.org], from: tocsin@example.org, smarthost: mail.example.org:587, username: tocsin, password_env: SMTP_PASSWORD }
    webhook: { url: https://hooks.example.org/alerts, secret_env: WEBHOOK_SECRET }
  - name: oncall
    webhook: { url: https://hooks.example.org/page }
inhibit_rules: [ { source_matchers: ['alertname="TargetDown"'], target_matchers: ['severity="warning"'], equal: [service] } ]
"#;

#[test]
fn design_example_pages_go_to_oncall_and_the_rest_to_ops() {
    let r = routing(DESIGN_EXAMPLE);
    assert_eq!(
        receivers(&r, &[("alertname", "Down"), ("severity", "page")]),
        ["oncall"]
    );
    assert_eq!(
        receivers(&r, &[("alertname", "Slow"), ("severity", "warning")]),
        ["ops"]
    );
    // an alert without the label does not match `severity="page"`
    assert_eq!(receivers(&r, &[("alertname", "Slow")]), ["ops"]);

    let page = &r
        .router
        .matches(&labels(&[("alertname", "Down"), ("severity", "page")]))[0];
    assert_eq!(
        page.group_by,
        GroupBy::Labels(vec!["alertname".into(), "service".into()])
    );
    assert_eq!(
        (page.group_wait, page.group_interval, page.repeat_interval),
        (30_000, 300_000, 4 * 3_600_000)
    );
    assert_eq!(page.path, "route.routes[0]");
}

#[test]
fn design_example_inhibits_warnings_of_a_service_whose_target_is_down() {
    let r = routing(DESIGN_EXAMPLE);
    let down = labels(&[("alertname", "TargetDown"), ("service", "api")]);
    let warning = labels(&[
        ("alertname", "Slow"),
        ("service", "api"),
        ("severity", "warning"),
    ]);
    let other_service = labels(&[
        ("alertname", "Slow"),
        ("service", "db"),
        ("severity", "warning"),
    ]);
    let page = labels(&[
        ("alertname", "Slow"),
        ("service", "api"),
        ("severity", "page"),
    ]);
    assert!(r.inhibitor.inhibited(&warning, std::slice::from_ref(&down)));
    assert!(
        !r.inhibitor
            .inhibited(&other_service, std::slice::from_ref(&down))
    );
    assert!(!r.inhibitor.inhibited(&page, std::slice::from_ref(&down)));
    assert!(!r.inhibitor.inhibited(&warning, &[]));
}

#[test]
fn first_matching_sibling_wins_unless_it_continues() {
    let r = routing(
        r#"
route:
  receiver: ops
  routes:
    - { matchers: ['team="db"'], receiver: dba, continue: true }
    - { matchers: ['severity="page"'], receiver: oncall }
    - { matchers: ['team="db"'], receiver: never }
receivers: [{ name: ops }, { name: dba }, { name: oncall }, { name: never }]
"#,
    );
    // continue on the first route fans out to the second; the second stops the third
    assert_eq!(
        receivers(&r, &[("team", "db"), ("severity", "page")]),
        ["dba", "oncall"]
    );
    // the first continues, the second does not match, so the third is tried and matches
    assert_eq!(
        receivers(&r, &[("team", "db"), ("severity", "warning")]),
        ["dba", "never"]
    );
    // nothing matches: the root answers
    assert_eq!(receivers(&r, &[("team", "web")]), ["ops"]);
}

#[test]
fn matching_is_depth_first_and_a_parent_answers_when_no_child_matches() {
    let r = routing(
        r#"
route:
  receiver: ops
  routes:
    - matchers: ['team="db"']
      receiver: dba
      routes:
        - { matchers: ['severity="page"'], receiver: dba-pager }
receivers: [{ name: ops }, { name: dba }, { name: dba-pager }]
"#,
    );
    assert_eq!(
        receivers(&r, &[("team", "db"), ("severity", "page")]),
        ["dba-pager"]
    );
    assert_eq!(receivers(&r, &[("team", "db")]), ["dba"]);
    // the child alone would match, but its parent does not
    assert_eq!(receivers(&r, &[("severity", "page")]), ["ops"]);
}

#[test]
fn children_inherit_receiver_grouping_timings_and_time_intervals() {
    let r = routing(
        r#"
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 10s
  repeat_interval: 1h
  routes:
    - matchers: ['team="db"']
      group_interval: 1m
      mute_time_intervals: [weekend]
      routes:
        - matchers: ['severity="page"']
          receiver: dba
        - matchers: ['severity="info"']
          group_by: [instance]
          mute_time_intervals: []
time_intervals:
  - name: weekend
    time_intervals: [{ weekdays: [saturday, sunday] }]
receivers: [{ name: ops }, { name: dba }]
"#,
    );
    let only = |pairs: &[(&str, &str)]| -> RouteMatch {
        let mut m = r.router.matches(&labels(pairs));
        assert_eq!(m.len(), 1);
        m.remove(0)
    };
    let page = only(&[("team", "db"), ("severity", "page")]);
    assert_eq!(page.receiver, "dba");
    assert_eq!(page.group_by, GroupBy::Labels(vec!["alertname".into()]));
    assert_eq!(page.group_wait, 10_000, "from the root");
    assert_eq!(page.group_interval, 60_000, "from the parent");
    assert_eq!(page.repeat_interval, 3_600_000, "from the root");
    assert_eq!(page.mute_time_intervals, ["weekend"], "from the parent");

    let info = only(&[("team", "db"), ("severity", "info")]);
    assert_eq!(
        info.receiver, "ops",
        "inherited through a route without one"
    );
    assert_eq!(info.group_by, GroupBy::Labels(vec!["instance".into()]));
    assert!(
        info.mute_time_intervals.is_empty(),
        "an explicit empty list replaces the parent's"
    );
}

#[test]
fn defaults_are_alertmanagers() {
    let r = routing("route: { receiver: ops }\nreceivers: [{ name: ops }]");
    let m = &r.router.matches(&labels(&[("alertname", "X")]))[0];
    assert_eq!(m.group_by, GroupBy::Labels(vec![]));
    assert_eq!(
        (m.group_wait, m.group_interval, m.repeat_interval),
        (30_000, 5 * 60_000, 4 * 3_600_000)
    );
    assert!(m.mute_time_intervals.is_empty() && m.active_time_intervals.is_empty());
    // without group_by, every alert of the route is in one group
    let (key, group_labels) = r.router.group_key(m, &labels(&[("alertname", "X")]));
    assert_eq!(key, "{}:{}");
    assert!(group_labels.is_empty());
}

#[test]
fn group_by_dots_groups_by_every_label() {
    let r = routing(
        r#"
route:
  receiver: ops
  group_by: ['...']
  routes:
    - { matchers: ['team="db"'], receiver: ops, group_by: [alertname] }
    - { matchers: ['team="web"'], receiver: ops }
receivers: [{ name: ops }]
"#,
    );
    let web = labels(&[("alertname", "Slow"), ("instance", "a:1"), ("team", "web")]);
    let m = &r.router.matches(&web)[0];
    assert_eq!(m.group_by, GroupBy::All, "inherited");
    let (key, group_labels) = r.router.group_key(m, &web);
    assert_eq!(group_labels, web);
    assert_eq!(
        key,
        r#"{}/{team="web"}:{alertname="Slow", instance="a:1", team="web"}"#
    );
    // a child naming labels replaces the wildcard
    let db = labels(&[("alertname", "Slow"), ("team", "db")]);
    assert_eq!(
        r.router.matches(&db)[0].group_by,
        GroupBy::Labels(vec!["alertname".into()])
    );
}

#[test]
fn regex_matchers_are_anchored() {
    let r = routing(
        r#"
route:
  receiver: ops
  routes:
    - { matchers: ['alertname=~"Foo|Bar"'], receiver: foobar }
    - { matchers: ['instance!~"db-.*"', 'env!=dev'], receiver: notdb }
receivers: [{ name: ops }, { name: foobar }, { name: notdb }]
"#,
    );
    assert_eq!(receivers(&r, &[("alertname", "Foo")]), ["foobar"]);
    assert_eq!(receivers(&r, &[("alertname", "Bar")]), ["foobar"]);
    // a substring match is not enough
    assert_eq!(
        receivers(&r, &[("alertname", "FooBar"), ("instance", "db-1")]),
        ["ops"]
    );
    assert_eq!(
        receivers(&r, &[("alertname", "XFoo"), ("instance", "web-db-1")]),
        ["notdb"]
    );
    assert_eq!(
        receivers(&r, &[("instance", "web-1"), ("env", "dev")]),
        ["ops"]
    );
}

#[test]
fn legacy_match_and_match_re_still_route() {
    let r = routing(
        r#"
route:
  receiver: ops
  routes:
    - match: { service: mysql, severity: page }
      receiver: dba
    - match_re: { service: "mysql|cassandra" }
      receiver: db-team
receivers: [{ name: ops }, { name: dba }, { name: db-team }]
"#,
    );
    assert_eq!(
        receivers(&r, &[("service", "mysql"), ("severity", "page")]),
        ["dba"]
    );
    assert_eq!(receivers(&r, &[("service", "cassandra")]), ["db-team"]);
    assert_eq!(receivers(&r, &[("service", "cassandra2")]), ["ops"]);
    // legacy and new-style matchers print alike in the route id
    let m = &r
        .router
        .matches(&labels(&[("service", "mysql"), ("severity", "page")]))[0];
    assert_eq!(m.route_id, r#"{}/{service="mysql",severity="page"}"#);
}

#[test]
fn every_validation_error_is_listed_with_its_path() {
    let got = errors(
        r#"
route:
  matchers: ['team="x"']
  continue: true
  mute_time_intervals: [weekend]
  group_interval: 0s
  group_by: [alertname, alertname, "bad-label"]
  routes:
    - receiver: nobody
      group_wait: 30 seconds
    - matchers: ['severity="page"', 'team=~"("', 'oops']
      match_re: { service: "(" }
      repeat_interval: 0s
      group_by: ['...', alertname]
      active_time_intervals: [office, holidays]
time_intervals:
  - name: office
    time_intervals:
      - times: [{ start_time: "17:00", end_time: "09:00" }]
        weekdays: ['friday:monday']
        location: Mars/Olympus
  - name: office
inhibit_rules:
  - source_matchers: ['alertname=~"*"']
    equal: [service, "not valid"]
receivers: [{ name: ops }]
"#,
    );
    let want: &[(&str, &str)] = &[
        (
            "time_intervals[0].time_intervals[0].times[0]",
            "start time 17:00 must be before end time 09:00",
        ),
        (
            "time_intervals[0].time_intervals[0].weekdays[0]",
            "ends before it starts",
        ),
        (
            "time_intervals[0].time_intervals[0].location",
            "unknown time zone \"Mars/Olympus\"",
        ),
        (
            "time_intervals[1].name",
            "time interval \"office\" is not unique",
        ),
        (
            "route.receiver",
            "root route must specify a default receiver",
        ),
        ("route.matchers", "root route must not have any matchers"),
        ("route.continue", "cannot have continue in root route"),
        (
            "route.mute_time_intervals",
            "root route must not have any mute time intervals",
        ),
        (
            "route.group_by[1]",
            "duplicated label \"alertname\" in group_by",
        ),
        ("route.group_by[2]", "invalid label name \"bad-label\""),
        ("route.group_interval", "group_interval cannot be zero"),
        (
            "route.mute_time_intervals[0]",
            "undefined time interval \"weekend\" used in route",
        ),
        (
            "route.routes[0].receiver",
            "undefined receiver \"nobody\" used in route",
        ),
        (
            "route.routes[0].group_wait",
            "invalid duration \"30 seconds\"",
        ),
        ("route.routes[1].group_by", "cannot have wildcard group_by"),
        (
            "route.routes[1].repeat_interval",
            "repeat_interval cannot be zero",
        ),
        (
            "route.routes[1].active_time_intervals[1]",
            "undefined time interval \"holidays\" used in route",
        ),
        ("route.routes[1].match_re.service", "invalid regex"),
        (
            "route.routes[1].matchers[1]",
            "invalid matcher \"team=~\\\"(\\\"\"",
        ),
        ("route.routes[1].matchers[2]", "expected =, !=, =~ or !~"),
        ("inhibit_rules[0].source_matchers[0]", "invalid matcher"),
        (
            "inhibit_rules[0].equal[1]",
            "invalid label name \"not valid\"",
        ),
    ];
    let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    let want_paths: Vec<&str> = want.iter().map(|(p, _)| *p).collect();
    assert_eq!(paths, want_paths, "{got:#?}");
    for ((path, msg), (_, fragment)) in got.iter().zip(want) {
        assert!(msg.contains(fragment), "{path}: {msg:?} lacks {fragment:?}");
    }
    // a valid interval name is not reported as undefined just because its definition is broken
    assert!(
        !got.iter()
            .any(|(_, m)| m.contains("\"office\" used in route"))
    );
}

#[test]
fn a_missing_route_is_an_error_and_router_new_checks_receivers() {
    let cfg = RoutingConfig::from_yaml("receivers: [{ name: ops }]").unwrap();
    let e = Routing::new(&cfg).unwrap_err();
    assert_eq!(e.0[0].kind, RouteErrorKind::NoRoute);
    assert_eq!(e.to_string(), "route: no route provided in config");

    let cfg = RoutingConfig::from_yaml("route: { receiver: pager }").unwrap();
    let e = Router::new(
        cfg.route.as_ref().unwrap(),
        &["ops"],
        &TimeIntervals::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "route.receiver: undefined receiver \"pager\" used in route"
    );
}

#[test]
fn group_keys_are_stable_and_distinct_per_route() {
    let yaml = r#"
route:
  receiver: ops
  group_by: [alertname]
  routes:
    - { matchers: ['severity="page"'], receiver: oncall, continue: true }
    - { matchers: ['severity="page"'], receiver: oncall, group_by: [alertname, instance] }
    - { matchers: ['team="db"', 'severity=~"warn.*"'], receiver: ops }
receivers: [{ name: ops }, { name: oncall }]
"#;
    let r = routing(yaml);
    let page = labels(&[
        ("alertname", "Down"),
        ("instance", "a"),
        ("severity", "page"),
    ]);
    let keys: Vec<String> = r
        .router
        .matches(&page)
        .iter()
        .map(|m| r.router.group_key(m, &page).0)
        .collect();
    // two routes with the same matchers get their position appended, as Alertmanager's route ID
    assert_eq!(
        keys,
        [
            r#"{}/{severity="page"}/0:{alertname="Down"}"#,
            r#"{}/{severity="page"}/1:{alertname="Down", instance="a"}"#,
        ]
    );
    // a unique route keeps Alertmanager's key: the matchers along its path, sorted
    let warn = labels(&[
        ("alertname", "Slow"),
        ("severity", "warning"),
        ("team", "db"),
    ]);
    let m = &r.router.matches(&warn)[0];
    let (key, group_labels) = r.router.group_key(m, &warn);
    assert_eq!(
        key,
        r#"{}/{severity=~"warn.*",team="db"}:{alertname="Slow"}"#
    );
    assert_eq!(group_labels, labels(&[("alertname", "Slow")]));
    // the same alert under a rebuilt router gets the same key; another alert name another key
    let again = routing(yaml);
    assert_eq!(
        again
            .router
            .group_key(&again.router.matches(&warn)[0], &warn)
            .0,
        key
    );
    let other = labels(&[
        ("alertname", "Other"),
        ("severity", "warning"),
        ("team", "db"),
    ]);
    assert_ne!(r.router.group_key(m, &other).0, key);
    // labels outside group_by do not split the group
    let warn2 = labels(&[
        ("alertname", "Slow"),
        ("severity", "warning"),
        ("team", "db"),
        ("instance", "b"),
    ]);
    assert_eq!(r.router.group_key(m, &warn2).0, key);
}

const INTERVALS: &str = r#"
route:
  receiver: ops
  routes:
    - { matchers: ['team="web"'], receiver: web, mute_time_intervals: [weekend] }
    - { matchers: ['team="berlin"'], receiver: berlin, active_time_intervals: [berlin-office] }
    - { matchers: ['team="both"'], receiver: both, active_time_intervals: [berlin-office], mute_time_intervals: [lunch] }
time_intervals:
  - name: weekend
    time_intervals: [{ weekdays: [saturday, sunday] }]
  - name: berlin-office
    time_intervals:
      - weekdays: ['monday:friday']
        times: [{ start_time: "09:00", end_time: "17:00" }]
        location: Europe/Berlin
  - name: lunch
    time_intervals:
      - times: [{ start_time: "12:00", end_time: "13:00" }]
        location: Europe/Berlin
receivers: [{ name: ops }, { name: web }, { name: berlin }, { name: both }]
"#;

fn route_for(r: &Routing, team: &str) -> RouteMatch {
    r.router.matches(&labels(&[("team", team)])).remove(0)
}

#[test]
fn mute_interval_starts_at_the_weekday_boundary() {
    let r = routing(INTERVALS);
    let web = route_for(&r, "web");
    let muted = |t: &str| web.muted_at(&r.time_intervals, at(t));
    // 2024-01-19 is a Friday (UTC, the default location)
    assert!(!muted("2024-01-19T23:59:59Z"));
    assert!(muted("2024-01-20T00:00:00Z"));
    assert!(muted("2024-01-21T23:59:59Z"));
    assert!(!muted("2024-01-22T00:00:00Z"));
    // a route without intervals is never muted
    assert!(!route_for(&r, "other").muted_at(&r.time_intervals, at("2024-01-20T12:00:00Z")));
}

#[test]
fn active_interval_reads_office_hours_in_its_time_zone() {
    let r = routing(INTERVALS);
    let berlin = route_for(&r, "berlin");
    let muted = |t: &str| berlin.muted_at(&r.time_intervals, at(t));
    // Monday 2024-01-15, winter: Berlin is UTC+1, so 09:00–17:00 there is 08:00–16:00 UTC
    assert!(muted("2024-01-15T07:59:59Z"), "08:59 in Berlin");
    assert!(!muted("2024-01-15T08:00:00Z"), "09:00 in Berlin");
    assert!(!muted("2024-01-15T15:59:59Z"), "16:59 in Berlin");
    assert!(muted("2024-01-15T16:00:00Z"), "17:00 in Berlin");
    // Monday 2024-07-15, summer: UTC+2, so 07:00–15:00 UTC
    assert!(!muted("2024-07-15T07:00:00Z"), "09:00 CEST");
    assert!(muted("2024-07-15T15:00:00Z"), "17:00 CEST");
    // Friday 2024-01-19 23:30 UTC is already Saturday 00:30 in Berlin
    assert!(muted("2024-01-19T23:30:00Z"));
    // Sunday 2024-01-21 23:30 UTC is Monday 00:30 in Berlin: a weekday, but before office hours
    assert!(muted("2024-01-21T23:30:00Z"));
}

#[test]
fn mute_takes_precedence_over_active() {
    let r = routing(INTERVALS);
    let both = route_for(&r, "both");
    let muted = |t: &str| both.muted_at(&r.time_intervals, at(t));
    assert!(!muted("2024-01-15T10:00:00Z"), "11:00 in Berlin, active");
    assert!(muted("2024-01-15T11:30:00Z"), "12:30 in Berlin, lunch");
    assert!(muted("2024-01-15T17:30:00Z"), "18:30 in Berlin, inactive");
}

#[test]
fn inhibition_needs_equal_labels_and_treats_missing_on_both_as_equal() {
    let r = routing(
        r#"
route: { receiver: ops }
receivers: [{ name: ops }]
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [cluster, service]
"#,
    );
    let critical = labels(&[
        ("severity", "critical"),
        ("cluster", "eu"),
        ("service", "api"),
    ]);
    let warning = |cluster: &str| {
        labels(&[
            ("severity", "warning"),
            ("cluster", cluster),
            ("service", "api"),
        ])
    };
    assert!(
        r.inhibitor
            .inhibited(&warning("eu"), std::slice::from_ref(&critical))
    );
    assert!(
        !r.inhibitor
            .inhibited(&warning("us"), std::slice::from_ref(&critical))
    );
    // `service` missing on both and `cluster` equal: inhibited
    let critical_no_service = labels(&[("severity", "critical"), ("cluster", "eu")]);
    let warning_no_service = labels(&[("severity", "warning"), ("cluster", "eu")]);
    assert!(r.inhibitor.inhibited(
        &warning_no_service,
        std::slice::from_ref(&critical_no_service)
    ));
    // missing on one side only: not equal
    assert!(
        !r.inhibitor
            .inhibited(&warning("eu"), &[critical_no_service])
    );
    // the source must match the source matchers
    assert!(!r.inhibitor.inhibited(&warning("eu"), &[warning("eu")]));
}

#[test]
fn an_alert_matching_both_sides_does_not_inhibit_itself() {
    // a rule whose source and target overlap: any alert of the service mutes its others
    let inhibitor = Inhibitor::new(&[serde_json::from_value(serde_json::json!({
        "source_matchers": ["alertname=~\"Down|Slow\""],
        "target_matchers": ["service=\"api\""],
        "equal": ["service"],
    }))
    .unwrap()])
    .unwrap();
    let down = labels(&[("alertname", "Down"), ("service", "api")]);
    let slow = labels(&[("alertname", "Slow"), ("service", "api")]);
    let errors = labels(&[("alertname", "Errors"), ("service", "api")]);
    // alone, an alert matching both sides is not inhibited by itself
    assert!(!inhibitor.inhibited(&down, std::slice::from_ref(&down)));
    // nor by another alert that also matches both sides (Alertmanager's rule)
    assert!(!inhibitor.inhibited(&down, &[down.clone(), slow.clone()]));
    // a target that is not a source is inhibited by either
    assert!(inhibitor.inhibited(&errors, &[down.clone(), errors.clone()]));
}

#[test]
fn routing_builds_from_the_typed_sections_config_keeps() {
    use std::path::Path;
    use tocsin::config::{Config, ConfigError};

    let cfg = Config::from_yaml(
        r#"
route:
  receiver: ops
  routes: [{ matchers: ['severity="page"'], receiver: oncall }]
receivers: [{ name: ops, webhook: { url: "http://x" } }, { name: oncall, webhook: { url: "http://x" } }]
inhibit_rules: [{ source_match: { alertname: TargetDown }, target_match_re: { severity: warn.* } }]
"#,
        Path::new("t.yml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = cfg.notify_plan().unwrap().routing;
    assert_eq!(receivers(&r, &[("severity", "page")]), ["oncall"]);
    // legacy inhibition fields, no `equal`: any firing TargetDown mutes every warning
    assert!(r.inhibitor.inhibited(
        &labels(&[("severity", "warning")]),
        &[labels(&[("alertname", "TargetDown")])]
    ));

    // a section of the wrong shape is a parse error at its place in the file (serde stops at
    // the first one, as for every other section)
    let e = Config::from_yaml(
        "route: { receiver: ops, routes: none }\ninhibit_rules: { not: a list }\n",
        Path::new("t.yml"),
    )
    .unwrap_err();
    assert!(matches!(e, ConfigError::Parse { line: 1, .. }), "{e}");
    assert!(e.to_string().starts_with("t.yml:1:"), "{e}");
}
