//! `Conversation` and the engine features the bindings rely on: stopping a request early while
//! keeping its tokens, forking a session, cancelling from another thread, chat turns through the
//! template, opening an engine from `app::EngineConfig`. Each is checked against the plain
//! single-threaded CPU loop (`Model::generate`) or the session's own tokens.

use std::ops::ControlFlow;
use std::sync::Arc;

use tandem::app::{EngineConfig, Status};
use tandem::{
    ChatMessage, Conversation, EndTurn, Engine, EngineOptions, Error, GenerateRequest, KvCache,
    LoadOptions, Model, PrefillPolicy, StopReason, TurnOptions,
};

fn engine() -> Engine {
    let model = Model::load(&tandem::embedded_model(), &LoadOptions::default()).unwrap();
    Engine::new(
        Arc::new(model),
        EngineOptions {
            prefill: PrefillPolicy::Cpu,
            ..EngineOptions::default()
        },
    )
    .unwrap()
}

fn greedy(n: usize) -> TurnOptions {
    TurnOptions {
        max_tokens: n,
        ignore_eos: true,
        ..TurnOptions::default()
    }
}

/// The plain CPU loop's greedy tokens after `prompt`.
fn reference(engine: &Engine, prompt: &[u32], n: usize) -> Vec<u32> {
    let m = engine.model();
    let mut cache = KvCache::new(&m.loaded.spec, engine.ctx());
    let mut req = GenerateRequest::greedy(prompt.to_vec(), n);
    req.ignore_eos = true;
    tandem::scheduler::generate(&m.cpu, &m.tokenizer, &mut cache, &req, &mut |_| {})
        .unwrap()
        .generated
}

#[test]
fn a_turn_stopped_by_its_callback_keeps_exactly_what_the_callback_saw() {
    let e = engine();
    let mut c = Conversation::new(&e);
    let mut seen = Vec::new();
    let out = c
        .say("Once upon a time", &greedy(200), |t| {
            seen.extend(t.id);
            if seen.len() == 5 {
                ControlFlow::Break(EndTurn::Keep)
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(out.stop_reason, StopReason::Stopped);
    assert_eq!(out.generated, seen);
    assert_eq!(out.stats.generated_tokens, 5);
    let prompt = e.model().encode_prompt("Once upon a time").unwrap();
    let want = reference(&e, &prompt, 5);
    assert_eq!(seen, want);
    let tokens = c.session().tokens().unwrap();
    assert_eq!(tokens, [prompt.clone(), want].concat());
    // The next turn continues from exactly those tokens.
    let next = c.send_tokens(Vec::new(), &greedy(6), |_| ControlFlow::Continue(()));
    let next = next.unwrap();
    assert_eq!(next.generated, reference(&e, &tokens, 6));
}

#[test]
fn stop_ends_the_request_early_in_the_engine() {
    let e = engine();
    let s = e.new_session();
    let prompt = e.model().encode_prompt("Once upon a time").unwrap();
    let mut req = GenerateRequest::greedy(prompt.clone(), 400);
    req.ignore_eos = true;
    let mut h = s.submit(req).unwrap();
    let first = h.next().expect("a first token");
    h.stop();
    let out = h.wait().unwrap();
    assert_eq!(out.stop_reason, StopReason::Stopped);
    assert!(first.id.is_some());
    // The worker may have taken a few more steps before it saw the stop, not 400.
    assert!(out.generated.len() < 50, "{} tokens", out.generated.len());
    assert_eq!(
        s.tokens().unwrap().len(),
        prompt.len() + out.generated.len()
    );
    // A stop after the end is harmless, and cancel still wins over stop.
    let mut req = GenerateRequest::greedy(Vec::new(), 400);
    req.ignore_eos = true;
    let h = s.submit(req).unwrap();
    h.stop();
    h.cancel();
    assert!(matches!(h.wait(), Err(Error::Cancelled)));
}

#[test]
fn a_fork_continues_like_its_source_and_independently_of_it() {
    let e = engine();
    let mut a = Conversation::new(&e);
    a.say(
        "Once upon a time",
        &greedy(8),
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    let before = a.session().tokens().unwrap();
    let mut b = a.fork().unwrap();
    assert_ne!(a.session().id(), b.session().id());
    assert_eq!(b.session().tokens().unwrap(), before);
    let from_a = a
        .say(" Then", &greedy(8), |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(b.session().tokens().unwrap(), before, "the fork moved");
    let from_b = b
        .say(" Then", &greedy(8), |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(from_a.generated, from_b.generated);
    assert_eq!(from_b.stats.cached_tokens, before.len() - 1);
    // Both equal one uninterrupted conversation.
    let then = e.model().tokenizer.encode(" Then", false).unwrap();
    assert_eq!(
        from_a.generated,
        reference(&e, &[before.clone(), then].concat(), 8)
    );
}

#[test]
fn cancel_from_another_thread_rolls_the_turn_back() {
    let e = engine();
    let mut c = Conversation::new(&e);
    c.say(
        "Once upon a time",
        &greedy(4),
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    let before = c.session().tokens().unwrap();
    let canceller = c.canceller();
    assert!(!canceller.cancel(), "nothing runs yet");
    let mut worker = None;
    let r = c.say(" and", &greedy(400), |_| {
        if worker.is_none() {
            let k = canceller.clone();
            // The cancel comes from another thread while this turn runs; wait for it.
            let t = std::thread::spawn(move || k.cancel());
            assert!(t.join().unwrap(), "the turn was running");
            worker = Some(());
        }
        ControlFlow::Continue(())
    });
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    assert_eq!(c.session().tokens().unwrap(), before);
    assert!(!canceller.cancel(), "a cancel is not held over");
    c.say(" and", &greedy(2), |_| ControlFlow::Continue(()))
        .unwrap();
}

#[test]
fn chat_turns_render_the_whole_conversation_with_the_template() {
    let e = engine();
    let mut c = Conversation::new(&e);
    let opts = TurnOptions {
        max_tokens: 12,
        chat: true,
        ..TurnOptions::default()
    };
    let one = c.say("Tell me a story.", &opts, |_| ControlFlow::Continue(()));
    let one = one.unwrap();
    let two = c.say("And then?", &opts, |_| ControlFlow::Continue(()));
    let two = two.unwrap();
    let messages = c.messages().to_vec();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[1].content, one.text);
    assert_eq!(messages[3].content, two.text);
    // What the session holds starts with the template's rendering of the chat so far.
    let rendered = e
        .model()
        .encode_chat(&[
            ChatMessage {
                role: "user".into(),
                content: "Tell me a story.".into(),
            },
            messages[1].clone(),
            messages[2].clone(),
        ])
        .unwrap();
    let tokens = c.session().tokens().unwrap();
    assert_eq!(&tokens[..rendered.len()], rendered.as_slice());
    assert_eq!(&tokens[rendered.len()..], two.generated.as_slice());
    // A failed chat turn leaves the messages as they were.
    let too_long = "story ".repeat(2000);
    assert!(matches!(
        c.say(&too_long, &opts, |_| ControlFlow::Continue(())),
        Err(Error::ContextOverflow { .. })
    ));
    assert_eq!(c.messages().len(), 4);
    assert_eq!(c.session().tokens().unwrap(), tokens);
}

#[test]
fn engine_config_refuses_bad_settings_with_their_status() {
    let m = tandem::embedded_model();
    let bad = |cfg: EngineConfig| cfg.open(&m).err().map(|e| e.status);
    assert_eq!(
        bad(EngineConfig {
            chunk_sizes: vec![0],
            ..EngineConfig::default()
        }),
        Some(Status::InvalidArgument)
    );
    assert_eq!(
        bad(EngineConfig {
            threads: 100_000,
            ..EngineConfig::default()
        }),
        Some(Status::InvalidArgument)
    );
    assert_eq!(
        bad(EngineConfig {
            context_length: 100_000,
            ..EngineConfig::default()
        }),
        Some(Status::InvalidArgument)
    );
    // An explicit QNN folder that does not hold the libraries: the search goes on to
    // TANDEM_QNN_LIB_DIR (documented order), so with the simulator there the NPU is prepared and
    // `require_npu` is met; without it, `require_npu` turns the missing NPU into an error.
    let npu = EngineConfig {
        prefill: PrefillPolicy::Npu,
        require_npu: true,
        qnn_lib_dir: Some("/nonexistent/qnn".into()),
        chunk_sizes: vec![8],
        context_length: 64,
        ..EngineConfig::default()
    };
    let env_has_qnn = std::env::var_os("TANDEM_QNN_LIB_DIR")
        .is_some_and(|d| std::path::Path::new(&d).join("libQnnHtp.so").is_file());
    if env_has_qnn {
        let engine = npu.open(&m).map_err(|e| e.to_string()).unwrap();
        assert!(matches!(engine.npu_state(), tandem::NpuState::Ready { .. }));
    } else {
        assert_eq!(bad(npu), Some(Status::NpuUnavailable));
    }
    let missing = tandem::ModelSource::Path("/nonexistent/m.gguf".into());
    let Err(e) = EngineConfig::default().open(&missing) else {
        panic!("a missing model opened");
    };
    assert_eq!(e.status, Status::ModelLoad);
    assert!(e.message.contains("/nonexistent/m.gguf"), "{}", e.message);
}

#[test]
fn a_turn_discarded_by_its_callback_is_undone_even_when_it_had_finished() {
    let e = engine();
    let mut c = Conversation::new(&e);
    c.say(
        "Once upon a time",
        &greedy(3),
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    let tokens = c.session().tokens().unwrap();
    let cached = c.session().cached_len().unwrap();
    // Discard at the last token: the engine has finished the request by then, or nearly.
    for at in [1usize, 4] {
        let mut n = 0;
        let r = c.say(" and", &greedy(4), |t| {
            n += usize::from(t.id.is_some());
            if n == at {
                ControlFlow::Break(EndTurn::Discard)
            } else {
                ControlFlow::Continue(())
            }
        });
        assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
        assert_eq!(c.session().tokens().unwrap(), tokens);
        assert_eq!(c.session().cached_len().unwrap(), cached);
    }
    // And the conversation goes on as if those turns never ran.
    let out = c
        .send_tokens(Vec::new(), &greedy(5), |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(out.generated, reference(&e, &tokens, 5));
}
