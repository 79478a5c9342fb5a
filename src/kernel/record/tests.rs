use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use super::*;

const BOOT: &str = "0c8a3f0e-9d1b-4f53-8f5e-2f6c1d9a7b21";
const NETNS: u64 = 4026531840;

fn entry(ifindex: u32, last: u16, created: u32) -> Entry {
    Entry {
        netns: NETNS,
        ifindex,
        address: Ipv6Addr::new(0x2001, 0xdb8, 0x42, 0x100, 0, 0, 0, last),
        prefix_len: 128,
        no_prefix_route: false,
        created,
    }
}

fn seen(entry: Entry) -> Seen {
    Seen { entry, nodad: true }
}

fn set(entries: &[Entry]) -> BTreeSet<Entry> {
    entries.iter().cloned().collect()
}

#[test]
fn render_then_parse_is_the_same_record() {
    let entries = set(&[entry(1, 1, 500), entry(2, 0x10, 501)]);
    let text = render(BOOT, &entries);
    assert_eq!(parse(&text, BOOT), Contents::Current(entries));
}

#[test]
fn a_record_of_another_boot_claims_nothing() {
    let entries = set(&[entry(1, 1, 500)]);
    let text = render("another-boot", &entries);
    let contents = parse(&text, BOOT);
    assert_eq!(contents, Contents::OtherBoot("another-boot".into()));
    assert!(contents.entries().is_empty());
}

#[test]
fn a_damaged_record_claims_nothing() {
    for text in ["", "{", "{\"boot_id\": 5}", "[]", "{\"addresses\": []}"] {
        let contents = parse(text, BOOT);
        assert!(matches!(contents, Contents::Unreadable(_)), "{text:?}");
        assert!(contents.entries().is_empty());
    }
}

#[test]
fn only_the_exact_address_routed6d_added_is_claimed() {
    let ours = entry(2, 1, 500);
    let entries = set(std::slice::from_ref(&ours));
    assert!(claims(&entries, &seen(ours.clone())));
    // Deleted and added again by someone else: a new creation stamp.
    assert!(!claims(&entries, &seen(entry(2, 1, 501))));
    // The interface was deleted and recreated: a new index.
    assert!(!claims(&entries, &seen(entry(3, 1, 500))));
    // The same address, index and stamp in another network namespace.
    let mut other = ours.clone();
    other.netns += 1;
    assert!(!claims(&entries, &seen(other)));
    // Another prefix length or prefix-route flag is not the address routed6d added.
    let mut other = ours.clone();
    other.prefix_len = 64;
    assert!(!claims(&entries, &seen(other)));
    let mut other = ours.clone();
    other.no_prefix_route = true;
    assert!(!claims(&entries, &seen(other)));
    // Taken over with NLM_F_REPLACE by a manager doing DAD: NODAD is gone.
    assert!(!claims(
        &entries,
        &Seen {
            entry: ours,
            nodad: false
        }
    ));
}

#[test]
fn insert_replaces_the_slot_and_remove_slot_empties_it() {
    let mut entries = set(&[entry(2, 1, 500), entry(2, 2, 500)]);
    insert(&mut entries, entry(2, 1, 900));
    assert_eq!(entries, set(&[entry(2, 1, 900), entry(2, 2, 500)]));
    remove_slot(&mut entries, NETNS, 2, entry(2, 1, 0).address);
    assert_eq!(entries, set(&[entry(2, 2, 500)]));
    // Another interface's or namespace's slot is another slot.
    remove_slot(&mut entries, NETNS, 3, entry(2, 2, 0).address);
    remove_slot(&mut entries, NETNS + 1, 2, entry(2, 2, 0).address);
    assert_eq!(entries, set(&[entry(2, 2, 500)]));
}

#[test]
fn missing_are_the_entries_read_before_the_dump_that_it_did_not_show() {
    let before = set(&[entry(2, 1, 500), entry(2, 2, 500)]);
    assert_eq!(
        missing(&before, &set(&[entry(2, 1, 500)]), NETNS),
        vec![entry(2, 2, 500)]
    );
    assert!(missing(&before, &before, NETNS).is_empty());
    // Another namespace's entries are not this dump's to judge.
    assert!(missing(&before, &BTreeSet::new(), NETNS + 1).is_empty());
}

#[test]
fn the_file_keeps_entries_across_opens_and_only_this_boot_reads_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let (mut record, contents) = AddressRecord::open_for(&state, BOOT.into(), NETNS).expect("open");
    assert_eq!(contents, Contents::Missing);
    record.add(entry(2, 1, 500)).expect("add");
    record.add(entry(2, 2, 501)).expect("add");
    assert!(!record.path().with_extension("json.tmp").exists());

    // A restart (or a crash after the add returned) reads what was written.
    let (reopened, contents) = AddressRecord::open_for(&state, BOOT.into(), NETNS).expect("open");
    assert_eq!(
        contents,
        Contents::Current(set(&[entry(2, 1, 500), entry(2, 2, 501)]))
    );
    assert_eq!(reopened.entries().len(), 2);

    // After a reboot the same file claims nothing, and the first change replaces it.
    let (mut rebooted, contents) =
        AddressRecord::open_for(&state, "next-boot".into(), NETNS).expect("open");
    assert_eq!(contents, Contents::OtherBoot(BOOT.into()));
    assert!(rebooted.entries().is_empty());
    rebooted.add(entry(2, 3, 7)).expect("add");
    let text = std::fs::read_to_string(rebooted.path()).expect("read");
    assert_eq!(
        parse(&text, "next-boot"),
        Contents::Current(set(&[entry(2, 3, 7)]))
    );
}

#[test]
fn two_processes_lose_none_of_each_others_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut daemon, _) = AddressRecord::open_for(dir.path(), BOOT.into(), NETNS).expect("open");
    let (mut command, _) = AddressRecord::open_for(dir.path(), BOOT.into(), NETNS).expect("open");
    daemon.add(entry(2, 1, 500)).expect("add");
    // The command read the file before the daemon's add: its own add keeps the daemon's.
    command.add(entry(2, 2, 600)).expect("add");
    // The daemon forgets what its last dump did not show; the command's entry was not
    // in what it read, so it stays.
    let before = daemon.entries().clone();
    daemon
        .forget(&missing(&before, &BTreeSet::new(), NETNS))
        .expect("forget");
    daemon.refresh().expect("refresh");
    assert_eq!(daemon.entries(), &set(&[entry(2, 2, 600)]));
    // Removing a slot the process never read is still seen through the file.
    daemon.remove(2, entry(2, 2, 0).address).ok();
    let (fresh, _) = AddressRecord::open_for(dir.path(), BOOT.into(), NETNS).expect("open");
    assert!(fresh.entries().is_empty());
}

#[test]
fn nothing_is_written_when_nothing_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut record, _) = AddressRecord::open_for(dir.path(), BOOT.into(), NETNS).expect("open");
    record.remove(2, entry(2, 1, 0).address).expect("remove");
    record.forget(&[]).expect("forget");
    assert!(!record.path().exists(), "no change, no file");
}
