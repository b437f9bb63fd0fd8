//! The Security Center operations the simulator serves, by their action names.

use crate::listing::Listing;
use crate::{ACTION, CONTAINERS_ACTION, IMAGES_ACTION};

/// One served operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    /// `DescribeImageLatestScanTask`.
    LatestScanTask,
    /// `DescribeImageInstances` or `DescribeContainerInstances`.
    List(Listing),
}

impl Operation {
    /// The operation an action name asks for; `None` for one the simulator does not serve.
    pub(crate) fn from_action(action: &str) -> Option<Operation> {
        match action {
            ACTION => Some(Operation::LatestScanTask),
            IMAGES_ACTION => Some(Operation::List(Listing::Images)),
            CONTAINERS_ACTION => Some(Operation::List(Listing::Containers)),
            _ => None,
        }
    }
}
