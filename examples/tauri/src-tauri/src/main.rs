// The Tauri host: registers the shell plugin (the webview spawns the sidecar
// with it, see ../../src/main.ts), makes sure the app data folder exists (the
// sidecar's database lives there) and tells the webview its own pid, which the
// sidecar gets as --parent-pid: a second way, besides stdin EOF, to notice
// that the host is gone.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use tauri::Manager;

#[tauri::command]
fn host_pid() -> u32 {
    std::process::id()
}

fn main() {
    tauri::Builder::default()
        .plugin(tauri_plugin_shell::init())
        .setup(|app| {
            std::fs::create_dir_all(app.path().app_data_dir()?)?;
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![host_pid])
        .run(tauri::generate_context!())
        .expect("error while running the Tauri application");
}
