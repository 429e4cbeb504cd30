//! Where `--flags` (or `SHIPDECK_FLAGS`) says the flags are: a flagd file, or a FeatureFlag
//! resource in a cluster (`k8s:CONTEXT/NAMESPACE/NAME`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{FeatureFlagRef, FileFlagStore, FlagError, FlagStore, KubeFlagStore};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagSource {
    File(PathBuf),
    FeatureFlag(FeatureFlagRef),
}

impl FlagSource {
    /// What `--flags` names: `k8s:CONTEXT/NAMESPACE/NAME`, else a file (a file whose name
    /// starts with `k8s:` is named `./k8s:…`).
    pub fn parse(arg: &Path) -> Result<Self, String> {
        match arg.to_str().and_then(FeatureFlagRef::parse) {
            Some(r) => r.map(FlagSource::FeatureFlag),
            None => Ok(FlagSource::File(arg.to_path_buf())),
        }
    }

    /// The store, checked usable by one read. A file named here must exist; a FeatureFlag is
    /// read through the kubeconfig (`$KUBECONFIG` or `~/.kube/config`).
    pub async fn open(&self) -> Result<Arc<dyn FlagStore>, FlagError> {
        match self {
            FlagSource::File(path) => {
                if !path.exists() {
                    return Err(FlagError::Refused(format!(
                        "flag file {} does not exist; check --flags",
                        path.display()
                    )));
                }
                Ok(Arc::new(FileFlagStore::open(path, None)?))
            }
            FlagSource::FeatureFlag(r) => {
                let store = KubeFlagStore::connect(r, None).await?;
                store.load().await?;
                Ok(Arc::new(store))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_k8s_reference_names_context_namespace_and_name_and_anything_else_is_a_file() {
        let r = |s: &str| FlagSource::parse(Path::new(s));
        let ff = |context: Option<&str>, namespace: &str, name: &str| {
            Ok(FlagSource::FeatureFlag(FeatureFlagRef {
                context: context.map(String::from),
                namespace: namespace.into(),
                name: name.into(),
            }))
        };
        assert_eq!(r("k8s:kind-prod/shop/flags"), ff(Some("kind-prod"), "shop", "flags"));
        assert_eq!(r("k8s:/shop/flags"), ff(None, "shop", "flags"));
        // EKS context names are ARNs, with a slash of their own.
        assert_eq!(
            r("k8s:arn:aws:eks:eu-west-1:1234:cluster/prod/shop/checkout.flags"),
            ff(Some("arn:aws:eks:eu-west-1:1234:cluster/prod"), "shop", "checkout.flags")
        );
        assert_eq!(r("flags.json"), Ok(FlagSource::File("flags.json".into())));
        assert_eq!(r("./k8s:odd.json"), Ok(FlagSource::File("./k8s:odd.json".into())));
        for (bad, says) in [
            ("k8s:shop/flags", "k8s:CONTEXT/NAMESPACE/NAME"),
            ("k8s:ctx//flags", "namespace `` is empty"),
            ("k8s:ctx/Shop/flags", "namespace `Shop` is not a Kubernetes name"),
            ("k8s:ctx/shop/", "name `` is empty"),
            ("k8s:ctx/shop/flags_v2", "name `flags_v2` is not a Kubernetes name"),
        ] {
            let err = r(bad).unwrap_err();
            assert!(err.contains(says) && err.contains("--flags k8s:CONTEXT/NAMESPACE/NAME"), "{bad}: {err}");
        }
        let back = FeatureFlagRef { context: Some("kind-prod".into()), namespace: "shop".into(), name: "flags".into() };
        assert_eq!(back.to_string(), "k8s:kind-prod/shop/flags");
    }
}
