//! Results: the STAC Collection, signed and expiring links, downloads with HEAD, Range and
//! If-Range, asset sources, and the GeoTIFF being valid.

mod common;

use std::time::Duration;

use common::*;
use fake_openeo::{AssetSource, FakeConfig};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn href(doc: &Value, file: &str) -> String {
    doc["assets"][file]["href"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn results_before_the_end_and_partial() {
    let fake = fake_with(FakeConfig::default().with_timing(0.1, 30.0)).await;
    let id = create(&fake, &simple_job("slow", "GTiff")).await;
    let (code, e) = get_json(&fake, &format!("/jobs/{id}/results")).await;
    assert_eq!((code, e["code"].as_str()), (400, Some("JobNotFinished")));
    start(&fake, &id).await;
    wait_for(&fake, &id, "running").await;
    let (code, e) = get_json(&fake, &format!("/jobs/{id}/results")).await;
    assert_eq!((code, e["code"].as_str()), (400, Some("JobNotFinished")));
    let (code, doc) = get_json(&fake, &format!("/jobs/{id}/results?partial=true")).await;
    assert_eq!(code, 200);
    assert_eq!(doc["openeo:status"], "running");
    assert!(doc["assets"].as_object().unwrap().is_empty());
}

#[tokio::test]
async fn results_document_shape() {
    let fake = fake().await;
    let (id, doc) = finished_job(&fake, &udp_job("PV", APEX_URL, "GTiff")).await;
    assert_eq!(doc["type"], "Collection");
    assert_eq!(doc["stac_version"], "1.0.0");
    assert_eq!(doc["id"], id.as_str());
    assert_eq!(doc["title"], "PV");
    assert_eq!(doc["license"], "proprietary");
    assert_eq!(doc["openeo:status"], "finished");
    assert_eq!(
        doc["extent"]["spatial"]["bbox"][0],
        json!([16.342, 47.962, 16.414, 48.008])
    );
    assert_eq!(
        doc["extent"]["temporal"]["interval"][0],
        json!(["2023-05-01T00:00:00Z", "2023-09-30T00:00:00Z"])
    );
    let a = &doc["assets"]["openEO.tif"];
    assert_eq!(a["type"], "image/tiff; application=geotiff");
    assert_eq!(a["roles"], json!(["data"]));
    assert!(a["file:size"].as_u64().unwrap() > 1000);
    assert_eq!(a["proj:epsg"], 32633);
    assert_eq!(a["proj:code"], "EPSG:32633");
    assert_eq!(a["proj:shape"].as_array().unwrap().len(), 2);
    assert!(a["file:checksum"].as_str().unwrap().starts_with("1220"));
    let h = href(&doc, "openEO.tif");
    assert!(
        h.starts_with(&format!("{}/jobs/{id}/results/assets/", fake.api_url())),
        "{h}"
    );
    assert!(h.contains("/openEO.tif?expires="), "{h}");
    let rels: Vec<&str> = doc["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["rel"].as_str().unwrap())
        .collect();
    assert!(rels.contains(&"self") && rels.contains(&"canonical"));

    // The canonical link works without a token.
    let canonical = doc["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"] == "canonical")
        .unwrap()["href"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client().get(&canonical).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["id"], id.as_str());

    // The signed asset link works without a token and matches size and checksum.
    let r = client().get(&h).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "image/tiff; application=geotiff"
    );
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, a["file:size"].as_u64().unwrap());
    let sum = format!("1220{}", hex(&Sha256::digest(&bytes)));
    assert_eq!(sum, a["file:checksum"].as_str().unwrap());
    assert_eq!(&bytes[..4], b"II*\0");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn formats_give_their_assets() {
    let fake = fake().await;
    for (format, file, media) in [
        ("netCDF", "openEO.nc", "application/x-netcdf"),
        ("GeoJSON", "vectorcube.geojson", "application/geo+json"),
        ("JSON", "result.json", "application/json"),
        ("gtiff", "openEO.tif", "image/tiff; application=geotiff"),
    ] {
        let (_, doc) = finished_job(&fake, &simple_job(format, format)).await;
        let a = &doc["assets"][file];
        assert_eq!(a["type"], media, "{format}: {doc}");
        let r = client().get(href(&doc, file)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], media);
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len() as u64, a["file:size"].as_u64().unwrap());
        if format == "netCDF" {
            assert_eq!(&body[..4], b"CDF\x01");
        }
        if format == "GeoJSON" {
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["type"], "FeatureCollection");
        }
    }
    // No save_result at all: GTiff.
    let body = json!({"process": {"process_graph": {"l": {"process_id": "load_collection",
        "arguments": {"id": "SENTINEL2_L2A"}, "result": true}}}});
    let (_, doc) = finished_job(&fake, &body).await;
    assert!(doc["assets"]["openEO.tif"].is_object());
}

#[tokio::test]
async fn signed_links_expire_and_check_their_signature() {
    let fake = fake_with(FakeConfig::default().with_timing(0.0, 0.1).with_link_ttl(1)).await;
    let (id, doc) = finished_job(&fake, &simple_job("ttl", "GTiff")).await;
    let h = href(&doc, "openEO.tif");

    // A tampered signature.
    let mut parts: Vec<String> = h.split('/').map(String::from).collect();
    let n = parts.len();
    parts[n - 2] = "0".repeat(32);
    let r = client().get(parts.join("/")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "CredentialsInvalid");
    // A tampered expiry invalidates the signature too.
    let (base, exp) = h.split_once("?expires=").unwrap();
    let later: u64 = exp.parse::<u64>().unwrap() + 100;
    let r = client()
        .get(format!("{base}?expires={later}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = client().get(&h).send().await.unwrap();
    assert_eq!(r.status(), 410);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "ResultLinkExpired");
    let r = client().head(&h).send().await.unwrap();
    assert_eq!(r.status(), 410);

    // A fresh results document gives fresh links.
    let (_, doc2) = get_json(&fake, &format!("/jobs/{id}/results")).await;
    let r = client()
        .get(href(&doc2, "openEO.tif"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn unsigned_asset_route_needs_the_token() {
    let fake = fake().await;
    let (id, doc) = finished_job(&fake, &simple_job("unsigned", "GTiff")).await;
    let url = format!("{}/jobs/{id}/results/assets/openEO.tif", fake.api_url());
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(&url)
        .header("Authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().await.unwrap().len() as u64,
        doc["assets"]["openEO.tif"]["file:size"].as_u64().unwrap()
    );
    let r = client()
        .get(format!(
            "{}/jobs/{id}/results/assets/other.tif",
            fake.api_url()
        ))
        .header("Authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn head_range_and_if_range() {
    let fake = fake().await;
    let (_, doc) = finished_job(&fake, &simple_job("ranges", "GTiff")).await;
    let h = href(&doc, "openEO.tif");
    let size = doc["assets"]["openEO.tif"]["file:size"].as_u64().unwrap();
    let full = client()
        .get(&h)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();

    let r = client().head(&h).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    assert!(r.bytes().await.unwrap().is_empty());

    let r = client()
        .get(&h)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 100-199/{size}").as_str()
    );
    assert_eq!(r.headers()["content-length"], "100");
    assert_eq!(&r.bytes().await.unwrap()[..], &full[100..200]);

    let from = size - 10;
    let r = client()
        .get(&h)
        .header("Range", format!("bytes={from}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], &full[from as usize..]);

    let r = client()
        .get(&h)
        .header("Range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], &full[full.len() - 5..]);

    let r = client()
        .get(&h)
        .header("Range", format!("bytes={size}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "RangeNotSatisfiable");

    // If-Range: the matching ETag keeps the range, another one gets the whole file.
    let r = client()
        .get(&h)
        .header("Range", "bytes=0-9")
        .header("If-Range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    let r = client()
        .get(&h)
        .header("Range", "bytes=0-9")
        .header("If-Range", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len() as u64, size);
}

#[tokio::test]
async fn a_server_that_ignores_ranges() {
    let fake = fake_with(FakeConfig {
        ranges_supported: false,
        ..FakeConfig::default().with_timing(0.0, 0.1)
    })
    .await;
    let (_, doc) = finished_job(&fake, &simple_job("noranges", "GTiff")).await;
    let h = href(&doc, "openEO.tif");
    let r = client().head(&h).send().await.unwrap();
    assert!(r.headers().get("accept-ranges").is_none());
    let r = client()
        .get(&h)
        .header("Range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().len() > 10);
}

#[tokio::test]
async fn asset_sources_generated_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("given.nc");
    std::fs::write(&path, b"CDF\x01 a file the test made").unwrap();
    let fake = fake_with(FakeConfig {
        checksum_max_bytes: 100_000,
        ..FakeConfig::default()
            .with_timing(0.0, 0.1)
            .with_asset("openEO.tif", AssetSource::Generated { size: 300_000 })
            .with_asset("openEO.nc", AssetSource::File(path.clone()))
    })
    .await;
    let (_, doc) = finished_job(&fake, &simple_job("gen", "GTiff")).await;
    assert_eq!(doc["assets"]["openEO.tif"]["file:size"], 300_000);
    assert!(doc["assets"]["openEO.tif"].get("file:checksum").is_none());
    let h = href(&doc, "openEO.tif");
    let a = client()
        .get(&h)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let b = client()
        .get(&h)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(a.len(), 300_000);
    assert_eq!(a, b, "deterministic");
    let part = client()
        .get(&h)
        .header("Range", "bytes=70000-70099")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&part[..], &a[70000..70100]);

    let (_, doc) = finished_job(&fake, &simple_job("file", "netCDF")).await;
    assert!(doc["assets"]["openEO.nc"]["file:checksum"].is_string());
    let r = client().get(href(&doc, "openEO.nc")).send().await.unwrap();
    assert_eq!(
        &r.bytes().await.unwrap()[..],
        std::fs::read(&path).unwrap().as_slice()
    );
    let r = client()
        .get(href(&doc, "openEO.nc"))
        .header("Range", "bytes=4-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], b" a fil");
}

/// The default `openEO.tif` is a GeoTIFF that GDAL reads with the advertised CRS and shape.
#[tokio::test]
async fn geotiff_is_valid_for_gdal() {
    if std::process::Command::new("gdalinfo")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("gdalinfo not available; skipping");
        return;
    }
    let fake = fake().await;
    let (_, doc) = finished_job(&fake, &udp_job("gdal", APEX_URL, "GTiff")).await;
    let bytes = client()
        .get(href(&doc, "openEO.tif"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openEO.tif");
    std::fs::write(&path, &bytes).unwrap();
    let out = std::process::Command::new("gdalinfo")
        .arg("-json")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["driverShortName"], "GTiff");
    let shape = &doc["assets"]["openEO.tif"]["proj:shape"];
    assert_eq!(info["size"], json!([shape[1], shape[0]]));
    let wkt = info["coordinateSystem"]["wkt"].as_str().unwrap();
    assert!(wkt.contains("UTM zone 33N"), "{wkt}");
    let bbox = doc["assets"]["openEO.tif"]["proj:bbox"].as_array().unwrap();
    let gt = info["geoTransform"].as_array().unwrap();
    assert_eq!(gt[0], bbox[0]);
    assert_eq!(gt[3], bbox[3]);
    // The raster covers the requested extent (WGS84 corners inside the footprint).
    let w = info["wgs84Extent"]["coordinates"][0].as_array().unwrap();
    let lons: Vec<f64> = w.iter().map(|p| p[0].as_f64().unwrap()).collect();
    let lats: Vec<f64> = w.iter().map(|p| p[1].as_f64().unwrap()).collect();
    let min = |v: &[f64]| v.iter().cloned().fold(f64::MAX, f64::min);
    let max = |v: &[f64]| v.iter().cloned().fold(f64::MIN, f64::max);
    assert!(min(&lons) <= 16.35 && max(&lons) >= 16.41, "{lons:?}");
    assert!(min(&lats) <= 47.97 && max(&lats) >= 48.0, "{lats:?}");
}

/// The default `openEO.nc` is a netCDF file GDAL reads with the same grid as the GeoTIFF.
#[tokio::test]
async fn netcdf_is_valid_for_gdal() {
    if std::process::Command::new("gdalinfo")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("gdalinfo not available; skipping");
        return;
    }
    let fake = fake().await;
    let (_, doc) = finished_job(&fake, &udp_job("gdal-nc", APEX_URL, "netCDF")).await;
    let bytes = client()
        .get(href(&doc, "openEO.nc"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openEO.nc");
    std::fs::write(&path, &bytes).unwrap();
    let out = std::process::Command::new("gdalinfo")
        .arg("-json")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["driverShortName"], "netCDF");
    let a = &doc["assets"]["openEO.nc"];
    assert_eq!(
        info["size"],
        json!([a["proj:shape"][1], a["proj:shape"][0]])
    );
    assert!(info["coordinateSystem"]["wkt"]
        .as_str()
        .unwrap()
        .contains("UTM zone 33N"));
    assert_eq!(info["geoTransform"][0], a["proj:bbox"][0]);
    assert_eq!(info["geoTransform"][3], a["proj:bbox"][3]);
}
