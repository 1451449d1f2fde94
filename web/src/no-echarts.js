// Stand-in for echarts.min.js when hpo-server was built without npm (server/CMakeLists.txt).
window.HPO_NO_CHARTS = "this hpo-server was built without npm, so the dashboard has no charts: install npm and rebuild";
