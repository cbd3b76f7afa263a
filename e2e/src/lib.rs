//! Shared harness for the e2e tests.
