//! Loads a city's configuration file (see `deploy/config/demo-city.toml`).

use std::path::Path;
use whistle_domain::city::{City, CityConfig};

use crate::{Error, Result};

pub fn load(path: &Path) -> Result<City> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("city file {}: {e}", path.display())))?;
    let config: CityConfig = toml::from_str(&text).map_err(|e| Error::Config(format!("city file {}: {e}", path.display())))?;
    City::new(config).map_err(|e| Error::Config(format!("city file {}: {e}", path.display())))
}
