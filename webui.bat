@echo off
rem Start the web UI on Windows: create venv if needed, install what is missing, run launch.py.
rem Settings (COMMANDLINE_ARGS, TORCH_COMMAND, PYTHON, VENV_DIR) go in webui-user.bat.

if exist webui.settings.bat call webui.settings.bat
if not defined PYTHON (set PYTHON=python)
if not defined VENV_DIR (set "VENV_DIR=%~dp0%venv")
set SD_WEBUI_RESTART=tmp/restart
set ERROR_REPORTING=FALSE

%PYTHON% -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)"
if %ERRORLEVEL% neq 0 (
    echo Python 3.10 or newer is needed. Install it from python.org and tick "Add Python to PATH".
    goto :end
)

if ["%VENV_DIR%"] == ["-"] goto :launch
if ["%SKIP_VENV%"] == ["1"] goto :launch
if not exist "%VENV_DIR%\Scripts\Python.exe" (
    echo Creating venv in %VENV_DIR%
    %PYTHON% -m venv "%VENV_DIR%"
    if %ERRORLEVEL% neq 0 (
        echo Unable to create venv in "%VENV_DIR%"
        goto :end
    )
    "%VENV_DIR%\Scripts\Python.exe" -m pip install --upgrade pip
)
set PYTHON="%VENV_DIR%\Scripts\Python.exe"

:launch
if exist tmp\restart del tmp\restart
%PYTHON% launch.py %*
if exist tmp\restart goto :launch
if %ERRORLEVEL% neq 0 echo Launch unsuccessful. Exiting.

:end
pause
