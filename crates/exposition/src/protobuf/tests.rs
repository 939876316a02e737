use super::*;
use proptest::prelude::*;

fn lp(name: &str, value: &str) -> LabelPair {
    LabelPair {
        name: name.into(),
        value: value.into(),
    }
}

fn page(fams: &[MetricFamily]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fams {
        encode_delimited(f, &mut out);
    }
    out
}

fn entries(body: &[u8], opts: ProtoOptions) -> Result<Vec<ProtoEntry>, ProtoError> {
    ProtoParser::new(body, opts).collect()
}

fn lbls(pairs: &[(&str, &str)]) -> Labels {
    let mut b = LabelsBuilder::new();
    for (n, v) in pairs {
        b.set(n, v);
    }
    b.build()
}

/// A native integer histogram as client_golang writes it: schema 0, zero
/// bucket, spans with a gap, delta counts, plus classic buckets.
fn native_family() -> MetricFamily {
    MetricFamily {
        name: "rpc_seconds".into(),
        help: "RPC latency.".into(),
        kind: ProtoType::Histogram,
        unit: String::new(),
        metric: vec![Metric {
            label: vec![lp("svc", "a")],
            histogram: Some(Histogram {
                sample_count: 13,
                sample_sum: 33.5,
                schema: 0,
                zero_threshold: 0.001,
                zero_count: 2,
                positive_span: vec![
                    Span {
                        offset: 0,
                        length: 2,
                    },
                    Span {
                        offset: 1,
                        length: 1,
                    },
                ],
                positive_delta: vec![3, -1, 2],
                negative_span: vec![Span {
                    offset: 1,
                    length: 1,
                }],
                negative_delta: vec![2],
                bucket: vec![
                    Bucket {
                        cumulative_count: 4,
                        upper_bound: 1.0,
                        ..Default::default()
                    },
                    Bucket {
                        cumulative_count: 10,
                        upper_bound: 10.0,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            timestamp_ms: 1_700_000_000_123,
            ..Default::default()
        }],
    }
}

#[test]
fn native_integer_histogram() {
    let body = page(&[native_family()]);
    let got = entries(&body, ProtoOptions::default()).unwrap();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        got[0],
        ProtoEntry::Help {
            metric: "rpc_seconds".into(),
            text: "RPC latency.".into()
        }
    );
    assert_eq!(
        got[1],
        ProtoEntry::Type {
            metric: "rpc_seconds".into(),
            kind: MetricType::Histogram
        }
    );
    let ProtoEntry::Histogram {
        labels,
        value,
        timestamp,
    } = &got[2]
    else {
        panic!("not a histogram: {:?}", got[2]);
    };
    assert_eq!(labels, &lbls(&[("__name__", "rpc_seconds"), ("svc", "a")]));
    assert_eq!(*timestamp, Some(1_700_000_000_123));
    let HistogramValue::Int(h) = value else {
        panic!("not an integer histogram");
    };
    assert_eq!(h.count, 13);
    assert_eq!(h.zero_count, 2);
    assert_eq!(h.zero_threshold, 0.001);
    assert_eq!(h.sum, 33.5);
    assert_eq!(h.positive_buckets, vec![3, -1, 2]);
    assert_eq!(h.positive_spans.len(), 2);
    assert_eq!(h.negative_buckets, vec![2]);
    assert_eq!(h.counter_reset_hint, CounterResetHint::Unknown);
    h.validate().unwrap();
}

#[test]
fn native_with_classic_kept() {
    let body = page(&[native_family()]);
    let got = entries(
        &body,
        ProtoOptions {
            native_histograms: true,
            keep_classic: true,
        },
    )
    .unwrap();
    let names: Vec<String> = got
        .iter()
        .filter_map(|e| match e {
            ProtoEntry::Sample { labels, value, .. } => Some(format!(
                "{}{{le={}}} {value}",
                labels.metric_name().unwrap_or(""),
                labels.get("le").unwrap_or("")
            )),
            ProtoEntry::Histogram { .. } => Some("H".into()),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        [
            "H",
            "rpc_seconds_count{le=} 13",
            "rpc_seconds_sum{le=} 33.5",
            "rpc_seconds_bucket{le=1.0} 4",
            "rpc_seconds_bucket{le=10.0} 10",
            "rpc_seconds_bucket{le=+Inf} 13",
        ]
    );
}

#[test]
fn native_disabled_reads_classic_only() {
    let body = page(&[native_family()]);
    let got = entries(
        &body,
        ProtoOptions {
            native_histograms: false,
            keep_classic: false,
        },
    )
    .unwrap();
    assert!(
        got.iter()
            .all(|e| !matches!(e, ProtoEntry::Histogram { .. }))
    );
    assert_eq!(
        got.iter()
            .filter(|e| matches!(e, ProtoEntry::Sample { .. }))
            .count(),
        5
    );
}

#[test]
fn float_gauge_histogram() {
    let fam = MetricFamily {
        name: "temp".into(),
        kind: ProtoType::GaugeHistogram,
        metric: vec![Metric {
            histogram: Some(Histogram {
                sample_count_float: 5.5,
                sample_sum: 10.0,
                schema: 1,
                zero_threshold: 0.0,
                zero_count_float: 0.5,
                positive_span: vec![Span {
                    offset: -2,
                    length: 3,
                }],
                // Compact(0) drops the empty middle bucket.
                positive_count: vec![1.0, 0.0, 4.0],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let got = entries(&page(&[fam]), ProtoOptions::default()).unwrap();
    let Some(ProtoEntry::Histogram {
        value: HistogramValue::Float(h),
        timestamp: None,
        ..
    }) = got.last()
    else {
        panic!("{got:?}");
    };
    assert_eq!(h.counter_reset_hint, CounterResetHint::Gauge);
    assert_eq!(h.count, 5.5);
    assert_eq!(h.zero_count, 0.5);
    assert_eq!(h.schema, 1);
    assert_eq!(h.positive_buckets, vec![1.0, 4.0]);
    assert_eq!(
        h.positive_spans,
        vec![
            Span {
                offset: -2,
                length: 1
            },
            Span {
                offset: 1,
                length: 1
            }
        ]
    );
}

#[test]
fn native_compacted_like_prometheus() {
    // Leading empty buckets go away, as Compact(0) does.
    let fam = MetricFamily {
        name: "h".into(),
        kind: ProtoType::Histogram,
        metric: vec![Metric {
            histogram: Some(Histogram {
                sample_count: 3,
                positive_span: vec![Span {
                    offset: 0,
                    length: 3,
                }],
                positive_delta: vec![0, 0, 3],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let got = entries(&page(&[fam]), ProtoOptions::default()).unwrap();
    let Some(ProtoEntry::Histogram {
        value: HistogramValue::Int(h),
        ..
    }) = got.last()
    else {
        panic!("{got:?}");
    };
    assert_eq!(
        h.positive_spans,
        vec![Span {
            offset: 2,
            length: 1
        }]
    );
    assert_eq!(h.positive_buckets, vec![3]);
}

#[test]
fn empty_native_histogram_with_noop_span() {
    let fam = MetricFamily {
        name: "h".into(),
        kind: ProtoType::Histogram,
        metric: vec![Metric {
            histogram: Some(Histogram {
                positive_span: vec![Span::default()],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let got = entries(&page(&[fam]), ProtoOptions::default()).unwrap();
    let Some(ProtoEntry::Histogram {
        value: HistogramValue::Int(h),
        ..
    }) = got.last()
    else {
        panic!("{got:?}");
    };
    assert_eq!(h.count, 0);
    assert!(h.positive_spans.is_empty());
}

#[test]
fn counters_gauges_summaries_untyped() {
    let fams = [
        MetricFamily {
            name: "reqs_total".into(),
            help: "Requests.".into(),
            kind: ProtoType::Counter,
            unit: "requests".into(),
            metric: vec![
                Metric {
                    label: vec![lp("code", "200"), lp("empty", "")],
                    counter: Some(7.0),
                    ..Default::default()
                },
                Metric {
                    label: vec![lp("code", "500")],
                    counter: Some(1.0),
                    timestamp_ms: -5,
                    ..Default::default()
                },
            ],
        },
        MetricFamily {
            name: "empty_family".into(),
            kind: ProtoType::Gauge,
            ..Default::default()
        },
        MetricFamily {
            name: "temp".into(),
            kind: ProtoType::Gauge,
            metric: vec![Metric {
                gauge: Some(-1.5),
                ..Default::default()
            }],
            ..Default::default()
        },
        MetricFamily {
            name: "rt".into(),
            kind: ProtoType::Summary,
            metric: vec![Metric {
                summary: Some(Summary {
                    sample_count: 4,
                    sample_sum: 2.0,
                    quantile: vec![
                        Quantile {
                            quantile: 0.5,
                            value: 0.25,
                        },
                        Quantile {
                            quantile: 1.0,
                            value: 1.5,
                        },
                    ],
                }),
                ..Default::default()
            }],
            ..Default::default()
        },
        MetricFamily {
            name: "u".into(),
            kind: ProtoType::Untyped,
            metric: vec![Metric {
                untyped: Some(3.0),
                ..Default::default()
            }],
            ..Default::default()
        },
    ];
    let got = entries(&page(&fams), ProtoOptions::default()).unwrap();
    let text: Vec<String> = got
        .iter()
        .map(|e| match e {
            ProtoEntry::Help { metric, text } => format!("HELP {metric} {text}"),
            ProtoEntry::Unit { metric, unit } => format!("UNIT {metric} {unit}"),
            ProtoEntry::Type { metric, kind } => format!("TYPE {metric} {kind}"),
            ProtoEntry::Sample {
                labels,
                value,
                timestamp,
            } => format!("{labels} {value} {timestamp:?}"),
            ProtoEntry::Histogram { .. } => "H".into(),
        })
        .collect();
    assert_eq!(
        text,
        [
            "HELP reqs_total Requests.",
            "UNIT reqs_total requests",
            "TYPE reqs_total counter",
            "{__name__=\"reqs_total\", code=\"200\"} 7 None",
            "{__name__=\"reqs_total\", code=\"500\"} 1 Some(-5)",
            "HELP temp ",
            "TYPE temp gauge",
            "{__name__=\"temp\"} -1.5 None",
            "HELP rt ",
            "TYPE rt summary",
            "{__name__=\"rt_count\"} 4 None",
            "{__name__=\"rt_sum\"} 2 None",
            "{__name__=\"rt\", quantile=\"0.5\"} 0.25 None",
            "{__name__=\"rt\", quantile=\"1.0\"} 1.5 None",
            "HELP u ",
            "TYPE u unknown",
            "{__name__=\"u\"} 3 None",
        ]
    );
}

#[test]
fn hand_assembled_bytes() {
    // MetricFamily{name:"a", type:GAUGE, metric:[{gauge:{value:2}}]}, with
    // an unknown field (15, varint) the decoder must skip.
    let mut msg = vec![0x0a, 0x01, b'a', 0x18, 0x01, 0x78, 0x05];
    let mut gauge = vec![0x09];
    gauge.extend_from_slice(&2.0f64.to_le_bytes());
    let mut metric = vec![0x12, gauge.len() as u8];
    metric.extend_from_slice(&gauge);
    msg.push(0x22);
    msg.push(metric.len() as u8);
    msg.extend_from_slice(&metric);
    let mut body = vec![msg.len() as u8];
    body.extend_from_slice(&msg);
    let got = entries(&body, ProtoOptions::default()).unwrap();
    assert_eq!(
        got.last(),
        Some(&ProtoEntry::Sample {
            labels: lbls(&[("__name__", "a")]),
            value: 2.0,
            timestamp: None
        })
    );
}

#[test]
fn unpacked_repeated_deltas() {
    // Histogram{schema:0 (absent), positive_span:[{0,2}], positive_delta
    // given as two unpacked varints}.
    let span = [0x08, 0x00, 0x10, 0x02];
    let mut h = vec![0x08, 0x03]; // sample_count 3
    h.push(0x62);
    h.push(span.len() as u8);
    h.extend_from_slice(&span);
    h.extend_from_slice(&[0x68, zz64(1) as u8, 0x68, zz64(1) as u8]);
    let mut metric = vec![0x3a, h.len() as u8];
    metric.extend_from_slice(&h);
    let mut msg = vec![0x0a, 0x01, b'h', 0x18, 0x04, 0x22, metric.len() as u8];
    msg.extend_from_slice(&metric);
    let mut body = vec![msg.len() as u8];
    body.extend_from_slice(&msg);
    let got = entries(&body, ProtoOptions::default()).unwrap();
    let Some(ProtoEntry::Histogram {
        value: HistogramValue::Int(h),
        ..
    }) = got.last()
    else {
        panic!("{got:?}");
    };
    assert_eq!(h.positive_buckets, vec![1, 1]);
    assert_eq!(h.count, 3);
}

#[test]
fn errors_are_positioned() {
    let good = page(&[native_family()]);
    // Truncated body: the length prefix promises more than there is.
    let e = entries(&good[..good.len() - 3], ProtoOptions::default()).unwrap_err();
    assert_eq!(e.offset, 0);
    assert!(e.message.contains("runs past the end"), "{e}");
    // A second, broken message after a good one: the offset points into it.
    let mut two = good.clone();
    two.extend_from_slice(&[0x02, 0x0a, 0x05]);
    let e = entries(&two, ProtoOptions::default()).unwrap_err();
    assert_eq!(e.offset, good.len() + 2);
    assert_eq!(
        e.to_string(),
        format!(
            "byte {}: length 5 runs past the end of the message",
            good.len() + 2
        )
    );
    // Spans and buckets that disagree.
    let mut bad = native_family();
    if let Some(h) = bad.metric[0].histogram.as_mut() {
        h.positive_delta.pop();
    }
    let e = entries(&page(&[bad]), ProtoOptions::default()).unwrap_err();
    assert!(
        e.message
            .contains("positive side: spans require 3 buckets, have 2"),
        "{e}"
    );
    // Unknown type.
    let e = entries(&[0x02, 0x18, 0x09], ProtoOptions::default()).unwrap_err();
    assert_eq!(e.offset, 1);
    assert!(e.message.contains("unknown metric type 9"));
    // Groups are not part of proto3.
    let e = entries(&[0x01, 0x0b], ProtoOptions::default()).unwrap_err();
    assert!(e.message.contains("wire type 3"), "{e}");
    // Invalid UTF-8 in a name.
    let e = entries(&[0x03, 0x0a, 0x01, 0xff], ProtoOptions::default()).unwrap_err();
    assert!(e.message.contains("UTF-8"));
    assert_eq!(e.offset, 3);
    // Duplicate label names.
    let mut dup = native_family();
    dup.metric[0].label.push(lp("svc", "b"));
    let e = entries(&page(&[dup]), ProtoOptions::default()).unwrap_err();
    assert!(e.message.contains("not unique"), "{e}");
    // After an error the parser is finished.
    let mut p = ProtoParser::new(&[0x05, 0x0a], ProtoOptions::default());
    assert!(matches!(p.next_entry(), Some(Err(_))));
    assert!(p.next_entry().is_none());
}

#[test]
fn om_float_format() {
    for (v, s) in [
        (0.0, "0.0"),
        (-0.0, "0.0"),
        (1.0, "1.0"),
        (0.5, "0.5"),
        (0.99, "0.99"),
        (100.0, "100.0"),
        (123456.0, "123456.0"),
        (1e6, "1e+06"),
        (2.5e6, "2.5e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1e-300, "1e-300"),
        (-1.5, "-1.5"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
    ] {
        assert_eq!(format_om_float(v), s, "{v}");
    }
}

fn arb_span() -> impl Strategy<Value = Span> {
    (-5i32..5, 0u32..4).prop_map(|(offset, length)| Span { offset, length })
}

fn arb_histogram() -> impl Strategy<Value = Histogram> {
    (
        any::<u32>(),
        -4i32..9,
        0u64..10,
        prop::collection::vec(arb_span(), 0..3),
        prop::collection::vec(-3i64..6, 0..8),
        any::<bool>(),
        prop::collection::vec((0u64..100, -10.0f64..10.0), 0..4),
    )
        .prop_map(|(n, schema, zc, spans, deltas, float, buckets)| {
            let mut h = Histogram {
                sample_count: u64::from(n),
                sample_sum: f64::from(n) / 3.0,
                schema,
                zero_count: zc,
                positive_span: spans,
                bucket: buckets
                    .into_iter()
                    .map(|(c, ub)| Bucket {
                        cumulative_count: c,
                        upper_bound: ub,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            if float {
                h.sample_count_float = f64::from(n) + 0.5;
                h.positive_count = deltas.iter().map(|d| *d as f64).collect();
            } else {
                h.positive_delta = deltas;
            }
            h
        })
}

fn arb_family() -> impl Strategy<Value = MetricFamily> {
    (
        "[a-z_]{1,8}",
        "[ -~]{0,10}",
        0u64..6,
        prop::collection::vec(
            (
                prop::collection::vec(("[a-c]", "[a-z]{0,3}"), 0..3),
                any::<f64>(),
                any::<i64>(),
                arb_histogram(),
            ),
            0..3,
        ),
    )
        .prop_map(|(name, help, kind, metrics)| {
            let kind = ProtoType::from_wire(kind).unwrap_or_default();
            MetricFamily {
                name,
                help,
                kind,
                unit: String::new(),
                metric: metrics
                    .into_iter()
                    .map(|(labels, v, ts, h)| Metric {
                        label: labels
                            .into_iter()
                            .map(|(n, v)| LabelPair { name: n, value: v })
                            .collect(),
                        gauge: Some(v),
                        counter: Some(v),
                        untyped: Some(v),
                        summary: Some(Summary {
                            sample_count: 1,
                            sample_sum: v,
                            quantile: vec![Quantile {
                                quantile: 0.9,
                                value: v,
                            }],
                        }),
                        histogram: Some(h),
                        timestamp_ms: ts,
                    })
                    .collect(),
            }
        })
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..300)) {
        for opts in [ProtoOptions::default(), ProtoOptions { native_histograms: true, keep_classic: true }] {
            for e in ProtoParser::new(&body, opts) {
                if let Err(e) = e {
                    prop_assert!(e.offset <= body.len());
                }
            }
        }
    }

    #[test]
    fn encode_decode_round_trip(fams in prop::collection::vec(arb_family(), 0..4)) {
        let body = page(&fams);
        let mut p = ProtoParser::new(&body, ProtoOptions::default());
        let mut decoded = Vec::new();
        while let Some(f) = p.next_family() {
            decoded.push(f.unwrap());
        }
        // NaN values do not compare equal; compare the re-encoding.
        prop_assert_eq!(page(&decoded), body);
    }

    #[test]
    fn never_panics_on_mutated_pages(
        fams in prop::collection::vec(arb_family(), 1..3),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut body = page(&fams);
        for (i, b) in edits {
            let i = i.index(body.len());
            body[i] = b;
        }
        let end = cut.index(body.len() + 1);
        for opts in [ProtoOptions::default(), ProtoOptions { native_histograms: true, keep_classic: true }] {
            for e in ProtoParser::new(&body[..end], opts) {
                match e {
                    Ok(ProtoEntry::Histogram { value: HistogramValue::Int(h), .. }) => {
                        let _ = h.validate();
                    }
                    Ok(ProtoEntry::Histogram { value: HistogramValue::Float(h), .. }) => {
                        let _ = h.validate();
                    }
                    Ok(_) => {}
                    Err(e) => prop_assert!(e.offset <= body.len()),
                }
            }
        }
    }
}
