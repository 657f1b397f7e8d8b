//! ACLs and digest authentication against a real ZooKeeper 3.8 server.

mod common;

use common::*;
use zkit::{Acl, Client, CreateMode, CreateOptions, Error, Perms, SessionState, Version};

fn with_acl(acl: Vec<Acl>) -> CreateOptions {
    CreateOptions::default().acl(acl)
}

fn identities(ids: &[zkit::ClientInfo]) -> Vec<(String, String)> {
    let mut v: Vec<_> = ids
        .iter()
        .map(|i| (i.auth_scheme.clone(), i.user.clone()))
        .collect();
    v.sort();
    v
}

async fn authed(user: &str, pw: &str) -> Client {
    let c = client().await;
    c.add_auth("digest", format!("{user}:{pw}").as_bytes())
        .await
        .unwrap();
    c
}

#[tokio::test]
async fn digest_acl_denies_others_and_admits_the_right_credentials() {
    let owner = authed("alice", "secret").await;
    let base = base(&owner, "digest").await;
    let p = format!("{base}/private");
    owner
        .create(
            &p,
            b"hidden",
            &with_acl(vec![Acl::digest(Perms::ALL, "alice", "secret")]),
        )
        .await
        .unwrap();

    let anon = client().await;
    assert_err(anon.get_data(&p).await, Error::NoAuth);
    assert_err(anon.get_children(&p).await, Error::NoAuth);
    assert_err(anon.set_data(&p, b"x", Version::Any).await, Error::NoAuth);
    assert_err(
        anon.create(&format!("{p}/kid"), b"", &CreateOptions::default())
            .await,
        Error::NoAuth,
    );
    assert_err(
        anon.set_acl(&p, &Acl::open_unsafe(), Version::Any).await,
        Error::NoAuth,
    );
    // exists is not ACL-checked.
    assert!(anon.exists(&p).await.unwrap().is_some());

    // The same credentials added later work on the same session.
    anon.add_auth("digest", b"alice:secret").await.unwrap();
    let (data, _) = anon.get_data(&p).await.unwrap();
    assert_eq!(&data[..], b"hidden");
    anon.set_data(&p, b"mine", Version::Any).await.unwrap();

    // Credentials given to the builder are sent on connect.
    let built = connect_with(Client::builder().digest_auth("alice", "secret"), "").await;
    assert_eq!(&built.get_data(&p).await.unwrap().0[..], b"mine");

    // Deleting needs DELETE on the parent (open), not on the node itself.
    client().await.delete(&p, Version::Any).await.unwrap();
}

/// Digest auth never fails in ZooKeeper: wrong credentials are accepted as
/// an identity that simply matches no ACL.
#[tokio::test]
async fn wrong_digest_credentials_are_accepted_but_do_not_match() {
    let owner = authed("bob", "right").await;
    let base = base(&owner, "digest-wrong").await;
    let p = format!("{base}/n");
    owner
        .create(
            &p,
            b"",
            &with_acl(vec![Acl::digest(Perms::ALL, "bob", "right")]),
        )
        .await
        .unwrap();

    let c = client().await;
    let mut states = c.state_stream();
    assert_eq!(states.next_state().await, Some(SessionState::Connected));
    c.add_auth("digest", b"bob:wrong").await.unwrap();
    assert_err(c.get_data(&p).await, Error::NoAuth);
    // whoAmI shows the user name whatever the password.
    assert_eq!(
        identities(&c.who_am_i().await.unwrap()),
        vec![
            ("digest".into(), "bob".into()),
            ("ip".into(), "127.0.0.1".into())
        ]
    );
    // The session is unharmed: no state change, same session.
    assert!(c.state().is_connected());
    never("state change", QUIET, states.next_state()).await;
    // Adding the right password too grants access (identities accumulate).
    c.add_auth("digest", b"bob:right").await.unwrap();
    c.get_data(&p).await.unwrap();
}

#[tokio::test]
async fn creator_all_acl_uses_the_authenticated_digest_identity() {
    let c = authed("carol", "pw").await;
    let base = base(&c, "creator-all").await;
    let p = format!("{base}/n");
    c.create(&p, b"", &with_acl(Acl::creator_all()))
        .await
        .unwrap();

    let (acl, stat) = c.get_acl(&p).await.unwrap();
    // The server expands scheme `auth` into the digest id, computed exactly
    // like zkit's Acl::digest.
    assert_eq!(acl, vec![Acl::digest(Perms::ALL, "carol", "pw")]);
    assert!(acl[0].id.id.starts_with("carol:"), "{acl:?}");
    assert_eq!(stat.aversion, 0);

    assert_err(client().await.get_data(&p).await, Error::NoAuth);
    authed("carol", "pw").await.get_data(&p).await.unwrap();
    assert_err(
        authed("carol", "nope").await.get_data(&p).await,
        Error::NoAuth,
    );
}

#[tokio::test]
async fn creator_all_without_auth_is_invalid_acl() {
    let c = client().await;
    let base = base(&c, "creator-all-noauth").await;
    assert_err(
        c.create(&format!("{base}/n"), b"", &with_acl(Acl::creator_all()))
            .await,
        Error::InvalidAcl,
    );
}

#[tokio::test]
async fn empty_acl_is_invalid() {
    let c = client().await;
    let base = base(&c, "empty-acl").await;
    let p = format!("{base}/n");
    assert_err(
        c.create(&p, b"", &with_acl(vec![])).await,
        Error::InvalidAcl,
    );
    assert_eq!(c.exists(&p).await.unwrap(), None);
    c.create(&p, b"", &CreateOptions::default()).await.unwrap();
    assert_err(c.set_acl(&p, &[], Version::Any).await, Error::InvalidAcl);
    // An unknown scheme is invalid too.
    assert_err(
        c.set_acl(
            &p,
            &[Acl::new(Perms::ALL, "nosuchscheme", "x")],
            Version::Any,
        )
        .await,
        Error::InvalidAcl,
    );
    assert_eq!(c.get_acl(&p).await.unwrap().0, Acl::open_unsafe());
}

#[tokio::test]
async fn get_and_set_acl_track_the_acl_version() {
    let c = client().await;
    let base = base(&c, "set-acl").await;
    let p = format!("{base}/n");
    let (_, created) = c.create(&p, b"", &CreateOptions::default()).await.unwrap();
    let (acl, stat) = c.get_acl(&p).await.unwrap();
    assert_eq!(acl, Acl::open_unsafe());
    assert_eq!(stat, created);

    let read_only = Acl::read_unsafe();
    assert_err(
        c.set_acl(&p, &read_only, Version::Exact(1)).await,
        Error::BadVersion,
    );
    let s1 = c
        .set_acl(&p, &Acl::open_unsafe(), Version::Exact(0))
        .await
        .unwrap();
    assert_eq!(s1.aversion, 1);
    // setACL changes neither data version nor mzxid.
    assert_eq!((s1.version, s1.mzxid), (0, created.mzxid));
    assert_err(
        c.set_acl(&p, &read_only, Version::Exact(0)).await,
        Error::BadVersion,
    );
    let s2 = c.set_acl(&p, &read_only, Version::Exact(1)).await.unwrap();
    assert_eq!(s2.aversion, 2);
    let (acl, stat) = c.get_acl(&p).await.unwrap();
    assert_eq!(acl, read_only);
    assert_eq!(stat, s2);

    // READ only: writes are refused, reads work, ADMIN is missing too.
    assert_err(c.set_data(&p, b"x", Version::Any).await, Error::NoAuth);
    assert_err(
        c.create(&format!("{p}/kid"), b"", &CreateOptions::default())
            .await,
        Error::NoAuth,
    );
    c.get_data(&p).await.unwrap();
    assert_err(
        c.set_acl(&p, &Acl::open_unsafe(), Version::Any).await,
        Error::NoAuth,
    );
    // Deleting needs DELETE on the parent only.
    c.delete(&p, Version::Any).await.unwrap();
}

#[tokio::test]
async fn delete_needs_delete_permission_on_the_parent() {
    let c = client().await;
    let base = base(&c, "delete-perm").await;
    let parent = format!("{base}/parent");
    c.create(&parent, b"", &CreateOptions::default())
        .await
        .unwrap();
    c.create(&format!("{parent}/kid"), b"", &CreateOptions::default())
        .await
        .unwrap();
    c.set_acl(
        &parent,
        &[Acl::new(
            Perms::READ | Perms::CREATE | Perms::ADMIN,
            "world",
            "anyone",
        )],
        Version::Any,
    )
    .await
    .unwrap();
    assert_err(
        c.delete(&format!("{parent}/kid"), Version::Any).await,
        Error::NoAuth,
    );
    c.create(&format!("{parent}/kid2"), b"", &CreateOptions::default())
        .await
        .unwrap();
    c.set_acl(&parent, &Acl::open_unsafe(), Version::Any)
        .await
        .unwrap();
    c.delete(&format!("{parent}/kid"), Version::Any)
        .await
        .unwrap();
}

/// getACL without ADMIN permission masks digest passwords (ZOOKEEPER-1392
/// style redaction): `user:x`.
#[tokio::test]
async fn get_acl_masks_digests_without_admin_permission() {
    let owner = authed("dave", "pw").await;
    let base = base(&owner, "acl-mask").await;
    let p = format!("{base}/n");
    let full = Acl::digest(Perms::ALL, "dave", "pw");
    let acl = vec![full.clone(), Acl::new(Perms::READ, "world", "anyone")];
    owner.create(&p, b"", &with_acl(acl.clone())).await.unwrap();

    assert_eq!(owner.get_acl(&p).await.unwrap().0, acl);
    let (seen, _) = client().await.get_acl(&p).await.unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1], acl[1]);
    assert_eq!(seen[0].perms, full.perms);
    assert_eq!(seen[0].id.scheme, "digest");
    assert_eq!(seen[0].id.id, "dave:x");
}

#[tokio::test]
async fn get_acl_of_a_node_without_read_or_admin_is_no_auth() {
    let owner = authed("erin", "pw").await;
    let base = base(&owner, "acl-noread").await;
    let p = format!("{base}/n");
    owner
        .create(
            &p,
            b"",
            &with_acl(vec![Acl::digest(Perms::ALL, "erin", "pw")]),
        )
        .await
        .unwrap();
    assert_err(client().await.get_acl(&p).await, Error::NoAuth);
}

#[tokio::test]
async fn who_am_i_lists_every_identity_of_the_connection() {
    let c = client().await;
    assert_eq!(
        identities(&c.who_am_i().await.unwrap()),
        vec![("ip".into(), "127.0.0.1".into())]
    );
    c.add_auth("digest", b"frank:pw").await.unwrap();
    c.add_auth("digest", b"grace:pw").await.unwrap();
    assert_eq!(
        identities(&c.who_am_i().await.unwrap()),
        vec![
            ("digest".into(), "frank".into()),
            ("digest".into(), "grace".into()),
            ("ip".into(), "127.0.0.1".into()),
        ]
    );
}

/// An unknown auth scheme makes the server answer AuthFailed and close the
/// connection: the session is over (state AuthFailed, terminal).
#[tokio::test]
async fn unknown_auth_scheme_fails_the_session() {
    let c = client().await;
    let base = base(&c, "auth-failed").await;
    c.create(
        &format!("{base}/eph"),
        b"",
        &CreateOptions::new(CreateMode::Ephemeral),
    )
    .await
    .unwrap();
    let mut states = c.state_stream();
    assert_eq!(states.next_state().await, Some(SessionState::Connected));

    assert_err(
        c.add_auth("nosuchscheme", b"whatever").await,
        Error::AuthFailed,
    );
    assert_eq!(
        soon("state", states.next_state()).await,
        Some(SessionState::AuthFailed)
    );
    assert_eq!(soon("end", states.next_state()).await, None);
    assert_eq!(c.state(), SessionState::AuthFailed);
    assert_err(c.get_data(&base).await, Error::AuthFailed);
    assert_err(
        c.clone().add_auth("digest", b"a:b").await,
        Error::AuthFailed,
    );
    c.close().await.unwrap();
}

/// The ACL check happens before the existence check for children: a create
/// under a node without CREATE permission is NoAuth even if the child
/// exists.
#[tokio::test]
async fn create_under_node_without_create_permission_is_no_auth() {
    let c = client().await;
    let base = base(&c, "no-create").await;
    let p = format!("{base}/ro");
    c.create(&p, b"", &with_acl(Acl::read_unsafe()))
        .await
        .unwrap();
    assert_err(
        c.create(&format!("{p}/x"), b"", &CreateOptions::default())
            .await,
        Error::NoAuth,
    );
    assert_err(
        c.create(
            &format!("{p}/x-"),
            b"",
            &CreateOptions::new(CreateMode::EphemeralSequential),
        )
        .await,
        Error::NoAuth,
    );
}

/// Credentials take effect for every request issued after `add_auth`, even
/// when its future has not been awaited yet (requests keep call order).
#[tokio::test]
async fn add_auth_applies_to_requests_pipelined_after_it() {
    let owner = authed("henry", "pw").await;
    let base = base(&owner, "auth-pipelined").await;
    let p = format!("{base}/n");
    owner
        .create(
            &p,
            b"ok",
            &with_acl(vec![Acl::digest(Perms::ALL, "henry", "pw")]),
        )
        .await
        .unwrap();

    let c = client().await;
    let before = c.get_data(&p);
    let auth = c.add_auth("digest", b"henry:pw");
    let after = c.get_data(&p);
    assert_err(before.await, Error::NoAuth);
    auth.await.unwrap();
    assert_eq!(&after.await.unwrap().0[..], b"ok");
}
