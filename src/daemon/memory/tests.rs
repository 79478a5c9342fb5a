use super::*;

const HOP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const SLASH_64: Form = Form {
    prefix_len: 64,
    no_prefix_route: false,
};

#[test]
fn forms_come_back_in_the_same_boot_and_namespace_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state/next-hops.json");
    assert!(load(&path).is_empty(), "nothing kept yet");
    save(&path, &[(HOP, SLASH_64)]).expect("save");
    assert_eq!(load(&path), [(HOP, SLASH_64)]);

    // The same file from another boot, or another namespace, says nothing.
    let text = std::fs::read_to_string(&path).expect("read");
    let mut file: File = serde_json::from_str(&text).expect("json");
    file.boot_id = "00000000-0000-0000-0000-000000000000".into();
    std::fs::write(&path, serde_json::to_vec(&file).expect("json")).expect("write");
    assert!(load(&path).is_empty(), "another boot's forms");
    let (boot_id, netns) = here().expect("here");
    file.boot_id = boot_id;
    file.netns = netns + 1;
    std::fs::write(&path, serde_json::to_vec(&file).expect("json")).expect("write");
    assert!(load(&path).is_empty(), "another namespace's forms");

    std::fs::write(&path, "not json").expect("write");
    assert!(load(&path).is_empty(), "an unreadable file is no memory");
}
