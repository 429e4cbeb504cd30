//! Tests for the keymap: the shipped files, key syntax, lookups and the errors a bad file gets.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::action::ACTIONS;
use super::*;

fn testdata(name: &str) -> String {
    format!("{}/src/config/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A fixture's error, parsed the way `load` would read it from disk.
fn fixture_err(name: &str) -> String {
    let path = testdata(name);
    let text = std::fs::read_to_string(&path).unwrap();
    match Keymap::parse(&text, &path) {
        Ok(_) => panic!("{name} should be refused"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
}

fn key(text: &str) -> Key {
    Key::parse(text).unwrap()
}

fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
    KeyEvent::new(code, modifiers)
}

fn event(k: &Key) -> KeyEvent {
    KeyEvent::new(k.code, k.modifiers)
}

fn shipped() -> Vec<(&'static str, Keymap)> {
    Keymap::embedded_names().iter().map(|n| (*n, Keymap::embedded(n).unwrap().unwrap())).collect()
}

#[test]
fn action_table_matches_the_enum_and_serde() {
    for (i, (action, name, desc)) in ACTIONS.iter().enumerate() {
        assert_eq!(*action as usize, i, "ACTIONS is out of order at {name}");
        assert_eq!(serde_json::to_value(action).unwrap(), serde_json::json!(name));
        assert_eq!(Action::from_name(name), Some(*action));
        assert!(!desc.is_empty());
    }
    for context in Context::ALL {
        assert_eq!(serde_json::to_value(context).unwrap(), serde_json::json!(context.name()));
    }
    let destructive: Vec<Action> = Action::all().filter(|a| a.destructive()).collect();
    use Action::*;
    assert_eq!(destructive, [ResumeFull, Abort, Rollback, Restart, ToggleFlag]);
}

#[test]
fn every_shipped_keymap_parses_and_every_binding_has_a_desc() {
    assert_eq!(Keymap::embedded_names(), EMBEDDED.map(|(n, _)| n));
    assert!(Keymap::embedded("vim").is_none());
    for (name, text) in EMBEDDED {
        let table: toml::Table = text.parse().unwrap();
        for (context, list) in &table {
            for (i, b) in list.as_array().unwrap().iter().enumerate() {
                let desc = b.get("desc").and_then(|d| d.as_str()).unwrap_or_default();
                assert!(!desc.trim().is_empty(), "{name}: [[{context}]] #{} has no desc", i + 1);
            }
        }
        assert!(Keymap::parse(text, name).is_ok());
    }
}

/// Where each action must work, for a keymap to be usable.
fn required() -> Vec<(Context, Action)> {
    let panes = [
        Context::Environments,
        Context::Rollout,
        Context::Analysis,
        Context::Flags,
        Context::Emergency,
        Context::Events,
        Context::Argo,
    ];
    let mut out = Vec::new();
    for action in Action::all() {
        use Action::*;
        match action {
            Pause | Restart => out.push((Context::Rollout, action)),
            // In the Argo pane: promote, promote --full, abort, retry, undo.
            Resume | ResumeFull | Abort | Rollback | Retry => {
                out.extend([Context::Rollout, Context::Argo].map(|c| (c, action)))
            }
            Promote | Approve | Deploy => out.push((Context::Environments, action)),
            ToggleFlag | FlagPercentUp | FlagPercentDown | FlagRollout | FlagExperiment | FlagTarget | FlagWeights
            | FlagEval => out.push((Context::Flags, action)),
            NewEmergency | Mark => out.push((Context::Emergency, action)),
            _ => out.extend(panes.iter().map(|p| (*p, action))),
        }
    }
    out.extend([Action::Select, Action::Back].map(|a| (Context::Dialog, a)));
    out.extend([Action::Select, Action::Back, Action::Up, Action::Down].map(|a| (Context::Input, a)));
    out
}

#[test]
fn every_action_is_reachable_in_its_context() {
    for (name, keymap) in shipped() {
        for (context, action) in required() {
            let k = keymap.key_for(context, action);
            let k = k.unwrap_or_else(|| panic!("{name}: no key for {action} in {context}"));
            assert_eq!(keymap.action(context, &event(k)), Some(action), "{name}: `{k}` in {context}");
            for b in keymap.bindings(context).into_iter().filter(|b| b.action == action) {
                for k in &b.keys {
                    assert_eq!(keymap.action(context, &event(k)), Some(action), "{name}: `{k}` in {context}");
                }
            }
        }
    }
}

#[test]
fn default_keys_are_the_documented_ones() {
    let keymap = Keymap::embedded("default").unwrap().unwrap();
    let cases = [
        (Context::Rollout, "q", Action::Quit),
        (Context::Rollout, "ctrl-c", Action::Quit),
        (Context::Events, "?", Action::Help),
        (Context::Events, "f1", Action::Help),
        (Context::Events, ":", Action::Palette),
        (Context::Events, "/", Action::Filter),
        (Context::Analysis, "j", Action::Down),
        (Context::Analysis, "G", Action::Bottom),
        (Context::Analysis, "ctrl-d", Action::PageDown),
        (Context::Analysis, "backtab", Action::PrevPane),
        (Context::Analysis, "5", Action::PaneEmergency),
        (Context::Rollout, "R", Action::ResumeFull),
        (Context::Rollout, "a", Action::Abort),
        (Context::Environments, "A", Action::Approve),
        (Context::Flags, "space", Action::ToggleFlag),
        (Context::Flags, "=", Action::FlagPercentUp),
        (Context::Dialog, "y", Action::Select),
        (Context::Dialog, "esc", Action::Back),
        (Context::Input, "up", Action::Up),
    ];
    for (context, k, action) in cases {
        assert_eq!(keymap.action(context, &event(&key(k))), Some(action), "`{k}` in {context}");
    }
    let emacs = Keymap::embedded("emacs").unwrap().unwrap();
    let cases = [
        (Context::Rollout, "ctrl-n", Action::Down),
        (Context::Rollout, "ctrl-p", Action::Up),
        (Context::Rollout, "ctrl-f", Action::Right),
        (Context::Rollout, "alt-v", Action::PageUp),
        (Context::Rollout, "alt->", Action::Bottom),
        (Context::Rollout, "ctrl-g", Action::Back),
        (Context::Rollout, "alt-x", Action::Palette),
        (Context::Dialog, "ctrl-g", Action::Back),
        (Context::Input, "ctrl-p", Action::Up),
    ];
    for (context, k, action) in cases {
        assert_eq!(emacs.action(context, &event(&key(k))), Some(action), "emacs: `{k}` in {context}");
    }
}

#[test]
fn key_syntax_parses_and_round_trips() {
    let cases = [
        ("q", KeyCode::Char('q'), KeyModifiers::NONE),
        ("A", KeyCode::Char('A'), KeyModifiers::NONE),
        ("shift-a", KeyCode::Char('A'), KeyModifiers::NONE),
        ("?", KeyCode::Char('?'), KeyModifiers::NONE),
        ("-", KeyCode::Char('-'), KeyModifiers::NONE),
        ("ctrl--", KeyCode::Char('-'), KeyModifiers::CONTROL),
        ("ctrl-c", KeyCode::Char('c'), KeyModifiers::CONTROL),
        ("Ctrl-Alt-x", KeyCode::Char('x'), KeyModifiers::CONTROL.union(KeyModifiers::ALT)),
        ("alt->", KeyCode::Char('>'), KeyModifiers::ALT),
        ("space", KeyCode::Char(' '), KeyModifiers::NONE),
        ("Enter", KeyCode::Enter, KeyModifiers::NONE),
        ("backtab", KeyCode::BackTab, KeyModifiers::NONE),
        ("shift-tab", KeyCode::BackTab, KeyModifiers::NONE),
        ("shift-up", KeyCode::Up, KeyModifiers::SHIFT),
        ("pagedown", KeyCode::PageDown, KeyModifiers::NONE),
        ("f12", KeyCode::F(12), KeyModifiers::NONE),
        ("é", KeyCode::Char('é'), KeyModifiers::NONE),
    ];
    for (text, code, modifiers) in cases {
        let k = key(text);
        assert_eq!(k, Key { code, modifiers }, "{text}");
        assert_eq!(Key::parse(k.to_string()), Ok(k), "{text} → {k}");
    }
    assert_eq!(key("ctrl-c").to_string(), "ctrl-c");
    assert_eq!(key("shift-a").to_string(), "A");
    assert_eq!(key("space").to_string(), "space");
    assert_eq!("alt->".parse::<Key>().map(|k| k.to_string()), Ok("alt->".to_string()));
    for (_, keymap) in shipped() {
        for context in Context::ALL {
            for b in keymap.bindings(context) {
                for k in &b.keys {
                    assert_eq!(Key::parse(k.to_string()), Ok(*k));
                }
            }
        }
    }
}

#[test]
fn bad_keys_say_what_is_wrong_and_the_syntax() {
    let cases = [
        ("", "it is empty"),
        ("ctrl+c", "neither one character nor a key name"),
        ("f13", "f1 to f12"),
        ("shift-1", "write the character shift gives"),
        (" ", "write `space`"),
        ("ctrl-", "neither one character nor a key name"),
    ];
    for (text, problem) in cases {
        let e = Key::parse(text).unwrap_err().to_string();
        assert_mentions(&e, &[&format!("`{text}`"), problem, "ctrl-, alt- or shift-", "pageup"]);
    }
}

#[test]
fn events_match_however_the_terminal_reports_shift() {
    let keymap = Keymap::embedded("default").unwrap().unwrap();
    let rollout = |code, mods| keymap.action(Context::Rollout, &press(code, mods));
    assert_eq!(rollout(KeyCode::Char('R'), KeyModifiers::NONE), Some(Action::ResumeFull));
    assert_eq!(rollout(KeyCode::Char('R'), KeyModifiers::SHIFT), Some(Action::ResumeFull));
    assert_eq!(rollout(KeyCode::Char('r'), KeyModifiers::SHIFT), Some(Action::ResumeFull));
    assert_eq!(rollout(KeyCode::Char('r'), KeyModifiers::NONE), Some(Action::Resume));
    assert_eq!(rollout(KeyCode::Char('?'), KeyModifiers::SHIFT), Some(Action::Help));
    assert_eq!(rollout(KeyCode::BackTab, KeyModifiers::SHIFT), Some(Action::PrevPane));
    assert_eq!(rollout(KeyCode::Tab, KeyModifiers::SHIFT), Some(Action::PrevPane));
    assert_eq!(rollout(KeyCode::Char('c'), KeyModifiers::CONTROL), Some(Action::Quit));
    assert_eq!(rollout(KeyCode::Char('a'), KeyModifiers::ALT), None);
    assert_eq!(rollout(KeyCode::Char('a'), KeyModifiers::SUPER), None);
    let mut release = press(KeyCode::Char('a'), KeyModifiers::NONE);
    release.kind = KeyEventKind::Release;
    assert_eq!(keymap.action(Context::Rollout, &release), None, "a key release must not abort twice");
    release.kind = KeyEventKind::Repeat;
    assert_eq!(keymap.action(Context::Rollout, &release), Some(Action::Abort));
}

#[test]
fn panes_fall_back_to_global_but_dialogs_and_input_do_not() {
    let keymap = Keymap::embedded("default").unwrap().unwrap();
    let q = press(KeyCode::Char('q'), KeyModifiers::NONE);
    assert_eq!(keymap.action(Context::Events, &q), Some(Action::Quit));
    assert_eq!(keymap.action(Context::Global, &q), Some(Action::Quit));
    assert_eq!(keymap.action(Context::Dialog, &q), None);
    assert_eq!(keymap.action(Context::Input, &q), None);
    let a = press(KeyCode::Char('a'), KeyModifiers::NONE);
    assert_eq!(keymap.action(Context::Rollout, &a), Some(Action::Abort));
    assert_eq!(keymap.action(Context::Environments, &a), None, "abort lives in the rollout pane only");

    assert_eq!(keymap.key_for(Context::Dialog, Action::Select), Some(&key("y")));
    assert_eq!(keymap.key_for(Context::Dialog, Action::Back), Some(&key("n")));
    assert_eq!(keymap.key_for(Context::Rollout, Action::Abort), Some(&key("a")));
    assert_eq!(keymap.key_for(Context::Rollout, Action::Quit), Some(&key("q")));
    assert_eq!(keymap.key_for(Context::Dialog, Action::Quit), None);
    assert_eq!(keymap.key_for(Context::Events, Action::Abort), None);
}

#[test]
fn bindings_list_own_then_unshadowed_global_in_file_order() {
    let keymap = Keymap::embedded("default").unwrap().unwrap();
    let env = keymap.bindings(Context::Environments);
    let actions: Vec<Action> = env.iter().map(|b| b.action).collect();
    assert_eq!(actions[..4], [Action::Select, Action::Promote, Action::Approve, Action::Deploy]);
    assert_eq!(actions[4], Action::Quit);
    assert_eq!(actions.iter().filter(|a| **a == Action::Select).count(), 1, "global enter is shadowed");
    assert!(env[0].desc.contains("release"), "the pane's own description wins: {}", env[0].desc);
    assert_eq!(actions.last(), Some(&Action::Refresh));

    let dialog: Vec<Action> = keymap.bindings(Context::Dialog).iter().map(|b| b.action).collect();
    assert_eq!(dialog, [Action::Select, Action::Back]);
    let global = keymap.bindings(Context::Global);
    assert_eq!(global.first().map(|b| b.action), Some(Action::Quit));
    assert!(global.iter().all(|b| b.action != Action::Abort));
}

fn config_dir_with(user_file: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(USER_FILE), user_file).unwrap();
    dir
}

#[test]
fn a_user_binding_replaces_the_default_keys_of_that_action_only() {
    let dir = config_dir_with(
        r#"
            [[rollout]]
            on = "x"
            run = "abort"
            desc = "Abort, my way"

            [[global]]
            on = "Q"
            run = "quit"
        "#,
    );
    let keymap = Keymap::load("default", Some(dir.path())).unwrap();
    let at = |ctx, k: &str| keymap.action(ctx, &event(&key(k)));
    assert_eq!(at(Context::Rollout, "x"), Some(Action::Abort));
    assert_eq!(at(Context::Rollout, "a"), None, "the default key is gone");
    assert_eq!(at(Context::Rollout, "p"), Some(Action::Pause), "other defaults stay");
    assert_eq!(at(Context::Rollout, "Q"), Some(Action::Quit));
    assert_eq!(at(Context::Rollout, "q"), None);
    assert_eq!(at(Context::Rollout, "ctrl-c"), None, "every default key of the action is replaced");

    let rollout = keymap.bindings(Context::Rollout);
    let abort = rollout.iter().position(|b| b.action == Action::Abort);
    assert_eq!(abort, Some(3), "in the default's place");
    assert_eq!(rollout[3].desc, "Abort, my way");
    let quit = keymap.bindings(Context::Global).into_iter().find(|b| b.action == Action::Quit);
    assert_eq!(quit.map(|b| b.desc.as_str()), Some(Action::Quit.describe()), "desc defaults to describe()");

    let none = tempfile::tempdir().unwrap();
    let plain = Keymap::load("emacs", Some(none.path())).unwrap();
    assert_eq!(plain.action(Context::Events, &event(&key("ctrl-n"))), Some(Action::Down));
    assert!(Keymap::load("default", None).is_ok());
}

#[test]
fn a_user_file_can_start_from_emacs() {
    let dir = config_dir_with("base = \"emacs\"\n[[rollout]]\non = \"k\"\nrun = \"abort\"\n");
    let keymap = Keymap::load("default", Some(dir.path())).unwrap();
    assert_eq!(keymap.action(Context::Rollout, &event(&key("ctrl-n"))), Some(Action::Down));
    assert_eq!(keymap.action(Context::Rollout, &event(&key("k"))), Some(Action::Abort));
    assert_eq!(keymap.action(Context::Rollout, &event(&key("a"))), None);
}

#[test]
fn unknown_bases_are_refused() {
    let e = Keymap::load("vim", None).unwrap_err().to_string();
    assert_mentions(&e, &["`vim`", "default, emacs"]);
    let dir = config_dir_with("base = \"vim\"\n");
    let e = Keymap::load("default", Some(dir.path())).unwrap_err().to_string();
    assert_mentions(&e, &[USER_FILE, "base", "`vim`", "default, emacs"]);
}

#[test]
fn a_key_bound_twice_in_one_context_is_refused() {
    let e = fixture_err("keymap_clash.toml");
    assert_mentions(&e, &["keymap_clash.toml", "[[rollout]] #2", "`p`", "`retry`", "[[rollout]] #1", "`pause`"]);
}

#[test]
fn a_pane_key_hiding_a_global_one_is_refused_naming_both() {
    let e = fixture_err("keymap_shadow.toml");
    assert_mentions(
        &e,
        &[
            "keymap_shadow.toml",
            "[[global]] #1 (run = \"refresh\")",
            "key `p` is bound to `pause` in [[rollout]] #1 of embedded keymap default",
            "and to `refresh` in [[global]] #1;",
            "in the rollout pane the pane's binding would hide `refresh`",
        ],
    );
    // The same clash within one file.
    let text = "[[global]]\non = \"a\"\nrun = \"refresh\"\n[[rollout]]\non = \"a\"\nrun = \"abort\"\n";
    let e = Keymap::parse(text, "k.toml").unwrap_err().to_string();
    assert_mentions(
        &e,
        &["[[rollout]] #1 (run = \"abort\")", "`a` is bound to `abort`", "to `refresh` in [[global]] #1"],
    );
}

#[test]
fn ctrl_d_never_runs_something_destructive() {
    let e = fixture_err("keymap_ctrl_d_abort.toml");
    assert_mentions(&e, &["keymap_ctrl_d_abort.toml", "[[rollout]] #1", "`ctrl-d`", "`abort`", "ctrl-d must never"]);
    for action in Action::all().filter(|a| a.destructive()) {
        let text = format!("[[flags]]\non = \"ctrl-D\"\nrun = \"{action}\"\n");
        assert!(Keymap::parse(&text, "k").is_err(), "{action} on ctrl-D");
    }
}

#[test]
fn an_unknown_action_lists_the_known_ones() {
    let e = fixture_err("keymap_unknown_action.toml");
    assert_mentions(&e, &["keymap_unknown_action.toml", "[[rollout]] #1", "unknown action `abortt`", "quit, help"]);
    assert_mentions(&e, &["flag_eval, new_emergency, mark, refresh"]);
}

#[test]
fn an_unparsable_key_gives_the_syntax() {
    let e = fixture_err("keymap_bad_key.toml");
    assert_mentions(&e, &["keymap_bad_key.toml", "[[global]] #1", "`ctrl+c`", "optionally after ctrl-"]);
}

#[test]
fn an_empty_on_is_refused() {
    let e = fixture_err("keymap_empty_on.toml");
    assert_mentions(&e, &["keymap_empty_on.toml", "[[global]] #1", "`on` is empty"]);
    let e = Keymap::parse("[[global]]\non = \"\"\nrun = \"help\"", "k").unwrap_err().to_string();
    assert_mentions(&e, &["`on` is empty"]);
}

#[test]
fn an_unknown_context_lists_the_known_ones() {
    let e = fixture_err("keymap_unknown_context.toml");
    assert_mentions(
        &e,
        &["keymap_unknown_context.toml", "unknown context `rollouts`", "global, environments, rollout"],
    );
}

#[test]
fn dialogs_and_the_input_line_take_only_their_actions() {
    let e = Keymap::parse("[[dialog]]\non = \"a\"\nrun = \"abort\"", "k").unwrap_err().to_string();
    assert_mentions(&e, &["[[dialog]] #1", "`abort` cannot be bound in [[dialog]]", "select, back"]);
    let e = Keymap::parse("[[input]]\non = \"tab\"\nrun = \"next_pane\"", "k").unwrap_err().to_string();
    assert_mentions(&e, &["select, back, up, down"]);
    let e = Keymap::parse("[[input]]\non = \"k\"\nrun = \"up\"", "k").unwrap_err().to_string();
    assert_mentions(&e, &["`k` would stop you typing `k`"]);
    assert!(Keymap::parse("[[input]]\non = \"ctrl-k\"\nrun = \"up\"", "k").is_ok());
}

#[test]
fn other_mistakes_are_named() {
    let cases = [
        ("[[global]]\non = \"q\"", "[[global]] #1: `run` is missing"),
        ("[[global]]\nrun = \"quit\"", "`on` is missing"),
        ("[[global]]\non = \"q\"\nrun = \"quit\"\nkey = \"x\"", "unknown key `key`"),
        ("[[global]]\non = 1\nrun = \"quit\"", "`on` must be a key in quotes"),
        ("global = \"q\"", "global: expected a list of bindings"),
        ("base = 1", "base: expected the name of an embedded keymap"),
    ];
    for (text, expected) in cases {
        let e = Keymap::parse(text, "k.toml").unwrap_err().to_string();
        assert_mentions(&e, &["keymap file k.toml", expected]);
    }
    let e = Keymap::parse("[[global]\n", "k.toml").unwrap_err().to_string();
    assert_mentions(&e, &["keymap file k.toml is not valid TOML"]);
    let same = "[[global]]\non = [\"q\", \"q\"]\nrun = \"quit\"";
    assert!(Keymap::parse(same, "k").is_ok(), "a key repeated for the same action is harmless");
}
